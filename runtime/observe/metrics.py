"""Prometheus metrics of the runtime: one ``ballast_`` namespace, base units, counters end in
``_total``.

Multiprocess mode: a BentoML worker sets ``PROMETHEUS_MULTIPROC_DIR`` *after* it imports the
service module, and ``prometheus_client`` picks its value store when it is first imported. So
nothing here imports ``prometheus_client`` at module import time: :func:`default_metrics` builds
the metric families once per process, on first use (when a pipeline is built inside the worker),
and they then land in the files that BentoML's ``/metrics`` endpoint collects. Tests pass their own
``CollectorRegistry`` to :class:`RuntimeMetrics`.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core.codes import BreakerState, Outcome, ShedReason
from ..core.record import RequestRecord

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class MetricBuffer:
    """Per-request increments gathered in process memory and written to prometheus_client at most
    ``flush_s`` later, in one write per series.

    Why: under BentoML, prometheus_client runs in multiprocess mode, where every ``inc`` takes a
    lock, checks the pid and packs the value into a memory-mapped file; per request, for the hook and
    the batch metrics, that was a measurable share of a fraud request's CPU (docs/benchmarks.md).
    Buffered, a request costs a few dictionary and list updates.

    When: the first increment after a flush schedules the next flush ``flush_s`` later on the
    running event loop (nothing runs while idle); :meth:`flush` also runs before every scrape of
    ``/metrics`` (the services' front door) and when a pipeline closes. Outside an event loop (scripts,
    tests) every increment is written at once. A killed worker loses at most ``flush_s`` of
    increments, as it loses its in-flight requests.

    Histograms are flushed through prometheus_client's per-bucket values (``_buckets``, ``_sum``
    of a histogram child), which it has no public call for; ``constraints.txt`` pins the version
    and tests/runtime/observe/test_metrics.py checks the flushed series against direct observations.
    """

    def __init__(self, flush_s: float = 0.5) -> None:
        self.flush_s = flush_s
        self._dirty: list[BufferedCounter | BufferedHistogram] = []
        self._scheduled = False

    def counter(self, child: Any) -> BufferedCounter:
        return BufferedCounter(child, self)

    def histogram(self, child: Any) -> BufferedHistogram:
        return BufferedHistogram(child, self)

    def mark(self, series: BufferedCounter | BufferedHistogram) -> None:
        """``series`` has its first increment since the last flush."""
        self._dirty.append(series)
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_later(self.flush_s, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for series in dirty:
            series.write()


class BufferedCounter:
    __slots__ = ("_buffer", "_child", "_pending")

    def __init__(self, child: Any, buffer: MetricBuffer) -> None:
        self._child = child
        self._buffer = buffer
        self._pending = 0.0

    def inc(self, amount: float = 1.0) -> None:
        first = not self._pending
        self._pending += amount
        if first:
            self._buffer.mark(self)

    def write(self) -> None:
        if self._pending:
            self._child.inc(self._pending)
            self._pending = 0.0


class BufferedHistogram:
    __slots__ = ("_bounds", "_buffer", "_child", "_counts", "_n", "_sum")

    def __init__(self, child: Any, buffer: MetricBuffer) -> None:
        self._child = child
        self._buffer = buffer
        self._bounds: list[float] = list(child._upper_bounds)  # ends with +Inf
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._n = 0

    def observe(self, amount: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, amount)] += 1  # first bound >= amount, as observe()
        self._sum += amount
        self._n += 1
        if self._n == 1:
            self._buffer.mark(self)

    def write(self) -> None:
        if not self._n:
            return
        for bucket, count in zip(self._child._buckets, self._counts, strict=True):
            if count:
                bucket.inc(count)
        self._child._sum.inc(self._sum)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._n = 0


class RuntimeMetrics:
    """Every metric family the runtime records, registered on one registry; per-request series
    are written through :attr:`buffer`."""

    def __init__(self, registry: CollectorRegistry | None = None, flush_s: float = 0.5) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        self.buffer = MetricBuffer(flush_s)
        self._series: dict[tuple[Any, ...], BufferedCounter | BufferedHistogram] = {}
        reg = registry if registry is not None else REGISTRY
        ns = "ballast"
        self.requests = Counter(
            "requests_total",
            "Requests by pipeline, the version of the deployment that served them, and outcome.",
            ["pipeline", "version", "outcome"],
            namespace=ns,
            registry=reg,
        )
        self.request_duration = Histogram(
            "request_duration_seconds",
            "Time from arrival to answer, by the deployment's version and the stage that answered.",
            ["pipeline", "version", "stage", "outcome"],
            namespace=ns,
            registry=reg,
            buckets=LATENCY_BUCKETS,
        )
        self.queue_wait = Histogram(
            "queue_wait_seconds",
            "Time a request waited in its model's batch queue.",
            ["pipeline", "stage"],
            namespace=ns,
            registry=reg,
            buckets=LATENCY_BUCKETS,
        )
        self.fallbacks = Counter(
            "fallbacks_total",
            "Moves down the inference chain.",
            ["pipeline", "from_stage", "to_stage", "reason"],
            namespace=ns,
            registry=reg,
        )
        self.validation_failures = Counter(
            "validation_failures_total",
            "Broken validation rules (one count per rule per request).",
            ["pipeline", "rule"],
            namespace=ns,
            registry=reg,
        )
        self.batch_size = Histogram(
            "batch_size_rows",
            "Rows per onnxruntime batch.",
            ["model", "version"],
            namespace=ns,
            registry=reg,
            buckets=BATCH_BUCKETS,
        )
        self.inference_duration = Histogram(
            "inference_duration_seconds",
            "Duration of one onnxruntime batch.",
            ["model", "version", "status"],
            namespace=ns,
            registry=reg,
            buckets=LATENCY_BUCKETS,
        )
        self.shed = Counter(
            "shed_total",
            "Requests refused before compute, by reason.",
            ["model", "reason"],
            namespace=ns,
            registry=reg,
        )
        self.breaker_state = Gauge(
            "breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["model"],
            namespace=ns,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.breaker_transitions = Counter(
            "breaker_transitions_total",
            "Circuit breaker state changes.",
            ["model", "state"],
            namespace=ns,
            registry=reg,
        )
        self.hook_errors = Counter(
            "hook_errors_total", "Request hooks that raised.", ["hook"], namespace=ns, registry=reg
        )
        self.rollout_stage = Gauge(
            "rollout_stage",
            "The rollout in progress: -1 none, 0 shadow, then the canary stage (1-based).",
            ["model"],
            namespace=ns,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.rollout_share = Gauge(
            "rollout_share",
            "The share of the traffic the rollout's candidate answers now (0 to 1).",
            ["model"],
            namespace=ns,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.rollout_decisions = Counter(
            "rollout_decisions_total",
            "Changes of a rollout, by action (advance, await_approval, hold, rollback, approve, pause, resume, abort).",
            ["model", "action"],
            namespace=ns,
            registry=reg,
        )
        self.rollbacks = Counter(
            "rollbacks_total",
            "Rollbacks by reason (agreement, failures, latency, shadow_failures, load_failed, operator, "
            "watch_failures, watch_latency, watch_accuracy).",
            ["model", "reason"],
            namespace=ns,
            registry=reg,
        )
        self.shadow_comparisons = Counter(
            "shadow_comparisons_total",
            "Shadow answers compared with production's, by result (agreed, disagreed, failed).",
            ["model", "result"],
            namespace=ns,
            registry=reg,
        )
        self.shadow_dropped = Counter(
            "shadow_dropped_total",
            "Shadow copies not run because the shadow's limit of copies in flight was reached.",
            ["model"],
            namespace=ns,
            registry=reg,
        )
        self.cache_lookups = Counter(
            "cache_lookups_total",
            "Result cache lookups by result (hit, miss).",
            ["pipeline", "version", "result"],
            namespace=ns,
            registry=reg,
        )
        self.cache_evictions = Counter(
            "cache_evictions_total",
            "Result cache entries evicted to stay within its bounds (expired entries not counted).",
            ["pipeline", "version"],
            namespace=ns,
            registry=reg,
        )
        self.cache_entries = Gauge(
            "cache_entries",
            "Entries in the result cache.",
            ["pipeline", "version"],
            namespace=ns,
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.cache_bytes = Gauge(
            "cache_bytes",
            "Bytes the result cache holds (its arrays and a fixed overhead per entry).",
            ["pipeline", "version"],
            namespace=ns,
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.audit_queued = Counter(
            "audit_queued_total", "Audit rows queued for writing.", ["pipeline"], namespace=ns, registry=reg
        )
        self.audit_written = Counter(
            "audit_written_total", "Audit rows written to the database.", ["pipeline"], namespace=ns, registry=reg
        )
        self.audit_dropped = Counter(
            "audit_dropped_total",
            "Audit rows dropped, by reason (queue_full, payload_shed, write_failed, build_failed, shutdown).",
            ["pipeline", "reason"],
            namespace=ns,
            registry=reg,
        )
        self.audit_write_seconds = Counter(
            "audit_write_seconds_total",
            "Seconds spent writing audit batches (divide by audit_written_total for the cost per row).",
            ["pipeline"],
            namespace=ns,
            registry=reg,
        )
        self.feedback_labels = Counter(
            "feedback_labels_total",
            "Labels received, by what became of them (accepted, duplicate, conflict, unknown, mismatched).",
            ["pipeline", "result"],
            namespace=ns,
            registry=reg,
        )
        self.feedback_delay = Histogram(
            "feedback_label_delay_seconds",
            "Time from a prediction to its label.",
            ["pipeline"],
            namespace=ns,
            registry=reg,
            buckets=(60, 600, 3600, 6 * 3600, 86_400, 7 * 86_400, 30 * 86_400),
        )

        def by_version(name: str, documentation: str) -> Any:
            """A gauge per service and version that every worker computes alike (the largest is shown)."""
            return Gauge(
                name, documentation, ["pipeline", "version"], namespace=ns, registry=reg, multiprocess_mode="livemax"
            )

        self.feedback_coverage = by_version(
            "feedback_coverage", "Share of the version's predictions in the feedback window that have a label."
        )
        self.feedback_labelled = by_version(
            "feedback_labelled", "Labelled predictions of the version in the feedback window."
        )
        self.feedback_accuracy = by_version(
            "feedback_accuracy", "Accuracy of the version's labelled predictions in the feedback window."
        )
        self.feedback_roc_auc = by_version(
            "feedback_roc_auc", "ROC AUC of the version's labelled scores in the feedback window (0/1 labels)."
        )

        def by_feature(name: str, documentation: str) -> Any:
            """A gauge per service, version, source (input, prediction) and feature (the largest
            of the workers' is shown)."""
            return Gauge(
                name,
                documentation,
                ["pipeline", "version", "source", "feature"],
                namespace=ns,
                registry=reg,
                multiprocess_mode="livemax",
            )

        self.drift_distance = by_feature(
            "drift_distance",
            "The feature's distance from the version's reference in the last decided window (numeric: "
            "Wasserstein in reference standard deviations; categorical: Jensen-Shannon).",
        )
        self.drift_threshold = by_feature(
            "drift_threshold",
            "The distance beyond which the feature's shift counts (chance at the window's size, or the floor).",
        )
        self.drift_p_value = by_feature(
            "drift_p_value",
            "The feature's test p-value in the last decided window, after the correction across features.",
        )
        self.drift_confirmed = by_feature(
            "drift_confirmed", "1 while the feature's drift is confirmed (drifted in consecutive windows), else 0."
        )
        self.drift_unseen_share = Gauge(
            "drift_unseen_share",
            "Share of the last window's rows with a category the version's reference never saw.",
            ["pipeline", "version", "feature"],
            namespace=ns,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.drift_windows = Counter(
            "drift_windows_total",
            "Drift windows closed, by whether they held enough rows to decide (true, false).",
            ["pipeline", "version", "source", "decided"],
            namespace=ns,
            registry=reg,
        )
        self.drift_last_window = Gauge(
            "drift_last_window_timestamp_seconds",
            "When the last drift window closed (seconds since the epoch).",
            ["pipeline", "version", "source"],
            namespace=ns,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.drift_score_change = by_version(
            "drift_score_change",
            "1 when ADWIN saw the mean of the version's score change within the last prediction window, else 0.",
        )
        self.performance_drop = by_version(
            "performance_drop",
            "1 while a held-out figure of the version (ROC AUC, accuracy) dropped on its labelled feedback "
            "(by at least the configured amount, significantly), else 0.",
        )
        self.performance_enough_labels = by_version(
            "performance_enough_labels",
            "1 when the version's labelled feedback in the window is enough to judge every figure, else 0.",
        )
        self.performance_figure = Gauge(
            "performance_figure",
            "A figure of the version (roc_auc, accuracy) on its labelled feedback (measured) and on held-out "
            "data (held_out).",
            ["pipeline", "version", "figure", "on"],
            namespace=ns,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.performance_error_change = by_version(
            "performance_error_change",
            "1 when ADWIN saw the version's error rate change within the feedback window, else 0.",
        )
        self.performance_estimated_accuracy = by_version(
            "performance_estimated_accuracy",
            "The accuracy the version's calibrated scores promise over its last prediction window (no labels).",
        )
        self.performance_estimate_stderr = by_version(
            "performance_estimate_stderr", "The standard error of ballast_performance_estimated_accuracy."
        )
        self.performance_estimate_unreliable = by_version(
            "performance_estimate_unreliable",
            "1 when the labelled accuracy and the calibrated estimate on the same rows are more than three "
            "standard errors apart, else 0.",
        )
        self.refused = Counter(
            "refused_total",
            "Requests the HTTP layer refused before the pipeline saw them, by route and reason.",
            ["route", "reason"],
            namespace=ns,
            registry=reg,
        )

    # --- adapters for the parts that report ------------------------------------------------

    def series(self, family: Any, *labels: str) -> Any:
        """``family.labels(*labels)`` behind :attr:`buffer` (a :class:`BufferedCounter` or
        :class:`BufferedHistogram`), memoised: no lock or allocation per request once warm."""
        key = (id(family), *labels)
        found = self._series.get(key)
        if found is None:
            from prometheus_client import Histogram

            child = family.labels(*labels)
            found = self.buffer.histogram(child) if isinstance(family, Histogram) else self.buffer.counter(child)
            self._series[key] = found
        return found

    def on_breaker_change(self, model: str, state: BreakerState) -> None:
        self.breaker_state.labels(model).set(state.value)
        self.breaker_transitions.labels(model, state.name.lower()).inc()

    def on_hook_error(self, hook: str) -> None:
        self.hook_errors.labels(hook).inc()

    def batch_observer(self, model: str, version: str) -> BatchMetrics:
        return BatchMetrics(self, model, version)

    def cache_observer(self, pipeline: str, version: str) -> CacheMetrics:
        return CacheMetrics(self, pipeline, version)


@functools.cache
def default_metrics() -> RuntimeMetrics:
    """The process-wide metrics on prometheus_client's default registry (built on first use)."""
    return RuntimeMetrics()


class BatchMetrics:
    """A batch observer bound to one model; its label children are resolved once."""

    def __init__(self, metrics: RuntimeMetrics, model: str, version: str) -> None:
        self._size = metrics.series(metrics.batch_size, model, version)
        self._ok = metrics.series(metrics.inference_duration, model, version, "ok")
        self._failed = metrics.series(metrics.inference_duration, model, version, "error")
        self._shed = metrics.shed
        self._model = model

    def on_batch(self, rows: int, seconds: float, ok: bool) -> None:
        self._size.observe(rows)
        (self._ok if ok else self._failed).observe(seconds)

    def on_shed(self, reason: ShedReason) -> None:
        self._shed.labels(self._model, reason).inc()


class CacheMetrics:
    """A result-cache observer bound to one deployment."""

    def __init__(self, metrics: RuntimeMetrics, pipeline: str, version: str) -> None:
        self._hit = metrics.series(metrics.cache_lookups, pipeline, version, "hit")
        self._miss = metrics.series(metrics.cache_lookups, pipeline, version, "miss")
        self._evicted = metrics.series(metrics.cache_evictions, pipeline, version)
        self._entries = metrics.cache_entries.labels(pipeline, version)
        self._bytes = metrics.cache_bytes.labels(pipeline, version)

    def on_lookup(self, hit: bool) -> None:
        (self._hit if hit else self._miss).inc()

    def on_eviction(self) -> None:
        self._evicted.inc()

    def on_size(self, entries: int, size_bytes: int) -> None:
        self._entries.set(entries)
        self._bytes.set(size_bytes)


class AuditMetrics:
    """An audit-writer observer bound to one service (called from the writer's thread)."""

    def __init__(self, metrics: RuntimeMetrics, pipeline: str) -> None:
        self._metrics, self._pipeline = metrics, pipeline
        self._queued = metrics.audit_queued.labels(pipeline)
        self._written = metrics.audit_written.labels(pipeline)
        self._seconds = metrics.audit_write_seconds.labels(pipeline)

    def on_queued(self, rows: int) -> None:
        self._queued.inc(rows)

    def on_written(self, rows: int, seconds: float) -> None:
        self._written.inc(rows)
        self._seconds.inc(seconds)

    def on_dropped(self, reason: str, rows: int) -> None:
        self._metrics.audit_dropped.labels(self._pipeline, reason).inc(rows)


class FeedbackMetrics:
    """What labelled feedback says, for one service (figures come from the shared database, so every
    worker reports the same; the largest is shown)."""

    def __init__(self, metrics: RuntimeMetrics, pipeline: str) -> None:
        self._metrics, self._pipeline = metrics, pipeline

    def received(self, counts: Mapping[str, int], delays_s: Sequence[float]) -> None:
        m = self._metrics
        for result, n in counts.items():
            if n:
                m.feedback_labels.labels(self._pipeline, result).inc(n)
        delay = m.feedback_delay.labels(self._pipeline)
        for seconds in delays_s:
            delay.observe(seconds)

    def figures(self, version: str, coverage: float, accuracy: float | None, auc: float | None, labelled: int) -> None:
        m, pipeline = self._metrics, self._pipeline
        m.feedback_coverage.labels(pipeline, version).set(coverage)
        m.feedback_labelled.labels(pipeline, version).set(labelled)
        if accuracy is not None:
            m.feedback_accuracy.labels(pipeline, version).set(accuracy)
        if auc is not None:
            m.feedback_roc_auc.labels(pipeline, version).set(auc)


class PrometheusHook:
    """The request hook that records per-request metrics."""

    def __init__(self, metrics: RuntimeMetrics | None = None) -> None:
        self.metrics = metrics or default_metrics()

    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        m = self.metrics
        stage = record.served_by or "none"
        m.series(m.requests, record.pipeline, record.version, outcome.value).inc()
        m.series(m.request_duration, record.pipeline, record.version, stage, outcome.value).observe(record.total_s)
        if record.batch_rows:
            m.series(m.queue_wait, record.pipeline, stage).observe(record.queue_wait_s)
        for from_stage, to_stage, reason in record.fallbacks:
            m.series(m.fallbacks, record.pipeline, from_stage, to_stage, reason).inc()
        for rule in record.failed_rules:
            m.series(m.validation_failures, record.pipeline, rule).inc()

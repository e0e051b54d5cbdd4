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

import functools
from typing import TYPE_CHECKING, Any

from .hooks import Outcome, RequestRecord
from .resilience.breaker import BreakerState

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class RuntimeMetrics:
    """Every metric family the runtime records, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = registry if registry is not None else REGISTRY
        ns = "ballast"
        self.requests = Counter(
            "requests_total",
            "Requests by pipeline and outcome.",
            ["pipeline", "outcome"],
            namespace=ns,
            registry=reg,
        )
        self.request_duration = Histogram(
            "request_duration_seconds",
            "Time from arrival to answer, by the stage that answered.",
            ["pipeline", "stage", "outcome"],
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
        self.refused = Counter(
            "refused_total",
            "Requests the HTTP layer refused before the pipeline saw them, by route and reason.",
            ["route", "reason"],
            namespace=ns,
            registry=reg,
        )

    # --- adapters for the parts that report ------------------------------------------------

    def on_breaker_change(self, model: str, state: BreakerState) -> None:
        self.breaker_state.labels(model).set(state.value)
        self.breaker_transitions.labels(model, state.name.lower()).inc()

    def on_hook_error(self, hook: str) -> None:
        self.hook_errors.labels(hook).inc()

    def batch_observer(self, model: str, version: str) -> BatchMetrics:
        return BatchMetrics(self, model, version)


@functools.cache
def default_metrics() -> RuntimeMetrics:
    """The process-wide metrics on prometheus_client's default registry (built on first use)."""
    return RuntimeMetrics()


class BatchMetrics:
    """A batch observer bound to one model; its label children are resolved once."""

    def __init__(self, metrics: RuntimeMetrics, model: str, version: str) -> None:
        self._size = metrics.batch_size.labels(model, version)
        self._ok = metrics.inference_duration.labels(model, version, "ok")
        self._failed = metrics.inference_duration.labels(model, version, "error")
        self._shed = metrics.shed
        self._model = model

    def on_batch(self, rows: int, seconds: float, ok: bool) -> None:
        self._size.observe(rows)
        (self._ok if ok else self._failed).observe(seconds)

    def on_shed(self, reason: str) -> None:
        self._shed.labels(self._model, reason).inc()


class PrometheusHook:
    """The request hook that records per-request metrics."""

    def __init__(self, metrics: RuntimeMetrics | None = None) -> None:
        self.metrics = metrics or default_metrics()
        self._children: dict[tuple[Any, ...], Any] = {}

    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        m = self.metrics
        stage = record.served_by or "none"
        self._child(m.requests, record.pipeline, outcome.value).inc()
        self._child(m.request_duration, record.pipeline, stage, outcome.value).observe(record.total_s)
        if record.batch_rows:
            self._child(m.queue_wait, record.pipeline, stage).observe(record.queue_wait_s)
        for from_stage, to_stage, reason in record.fallbacks:
            self._child(m.fallbacks, record.pipeline, from_stage, to_stage, reason).inc()
        for rule in record.failed_rules:
            self._child(m.validation_failures, record.pipeline, rule).inc()

    def _child(self, family: Any, *labels: str) -> Any:
        """``family.labels(*labels)``, memoised: no lock or allocation per request once warm."""
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

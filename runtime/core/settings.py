"""The runtime's settings, read from ``BALLAST_*`` environment variables once per process and passed
in (the services read them at start-up; nothing here reads the environment at import).

* :class:`Settings` -- how requests are served: deadlines, the chain, breakers, onnxruntime, and the
  defaults of every model stage.
* :class:`StageSettings` -- how one model stage runs (threads, batching, queue). A stage takes the
  defaults of :class:`Settings`, then what the service declares for it, then what
  ``BALLAST_STAGES`` says for it (an operator's word is last).
* :class:`DrillSettings` -- fault injection and the switches that exist only to measure costs; kept
  apart so that nobody mistakes them for production knobs.

Values are checked when the object is built; a bad value fails at start-up with the value in the
message (``BALLAST_MAX_BATCH_SIZE=0`` -> "Input should be greater than or equal to 1 ... input_value=0").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StageSettings(BaseModel):
    """How one model stage runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intra_op_threads: int = Field(1, ge=0, le=256)
    """Threads onnxruntime uses inside one operator (0 = onnxruntime's default, one per core).
    One thread per session is the measured best on a 2-core machine: the default spins."""
    inter_op_threads: int = Field(1, ge=0, le=256)
    """Threads onnxruntime uses to run independent operators in parallel (0 = default)."""
    intra_op_spinning: bool = False
    """Let idle intra-op threads spin-wait for the next operator (onnxruntime's default is on). Off
    leaves the cores to the event loop and the network between operators (docs/benchmarks.md).
    Matters only with ``intra_op_threads`` above 1."""
    max_batch_size: int = Field(64, ge=1, le=65536)
    """Most rows merged into one onnxruntime call. A request with more rows is computed in several
    batches. 1 turns batching off for the stage."""
    max_batch_wait_ms: float = Field(2.0, ge=0, le=10_000)
    """Longest a formed batch waits for more rows while another batch is computing."""
    max_batches_in_flight: int = Field(1, ge=1, le=64)
    """Batches computed at the same time (each in its own worker thread)."""
    max_queue_rows: int = Field(2048, ge=1)
    """Rows allowed to wait; beyond it requests are shed (503, or the next stage)."""

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> Self:
        if self.max_queue_rows < self.max_batch_size:
            raise ValueError(
                f"max_queue_rows must be at least max_batch_size, got {self.max_queue_rows} < {self.max_batch_size}"
            )
        return self


STAGE_FIELDS = frozenset(StageSettings.model_fields)


class Settings(BaseSettings):
    """Ballast runtime settings. Environment variables use the prefix ``BALLAST_``."""

    model_config = SettingsConfigDict(env_prefix="BALLAST_", extra="forbid", validate_default=True, frozen=True)

    # --- every model stage, unless the service or BALLAST_STAGES says otherwise ------------------
    intra_op_threads: int = Field(1, ge=0, le=256)
    """Default of :attr:`StageSettings.intra_op_threads`."""
    inter_op_threads: int = Field(1, ge=0, le=256)
    """Default of :attr:`StageSettings.inter_op_threads`."""
    intra_op_spinning: bool = False
    """Default of :attr:`StageSettings.intra_op_spinning`."""
    max_batch_size: int = Field(64, ge=1, le=65536)
    """Default of :attr:`StageSettings.max_batch_size`."""
    max_batch_wait_ms: float = Field(2.0, ge=0, le=10_000)
    """Default of :attr:`StageSettings.max_batch_wait_ms`."""
    max_batches_in_flight: int = Field(1, ge=1, le=64)
    """Default of :attr:`StageSettings.max_batches_in_flight`."""
    max_queue_rows: int = Field(2048, ge=1)
    """Default of :attr:`StageSettings.max_queue_rows`."""
    stages: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-stage settings by model name, as JSON: ``{"fraud-logreg": {"max_batch_size": 1}}``.
    They win over the service's declaration and over the defaults above."""

    # --- onnxruntime, the same for every stage ----------------------------------------------
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    """onnxruntime graph optimization level."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Execution device. ``cuda`` uses the CUDA execution provider when onnxruntime offers it
    and falls back to the CPU, with a warning, when it does not."""
    inline_max_us: float = Field(100.0, ge=0, le=1_000_000)
    """Batches predicted to compute faster than this run on the event loop's thread instead of
    a worker thread (a thread hop costs ~150 us on a small VM). 0 = always use a worker thread."""
    warmup_runs: int = Field(3, ge=0, le=1000)
    """Inference runs per warm-up batch size before a model is reported ready."""

    # --- requests, deadlines and the chain --------------------------------------------------
    max_request_rows: int = Field(64, ge=1, le=65536)
    """Most rows (records, or tensor rows) one request may carry."""
    request_timeout_ms: float = Field(1000.0, gt=0, le=600_000)
    """Default deadline of a request, from its arrival, when the caller gives none."""
    fallback_reserve_ms: float = Field(50.0, ge=0, le=600_000)
    """Part of the deadline the primary model leaves for the fallback stages."""
    shed_policy: Literal["reject", "degrade"] = "reject"
    """When a model stage sheds a request because its queue is full or it is shutting down: ``reject``
    answers 503, ``degrade`` hands the request to the next (cheaper) stage of the chain. A request a
    stage cannot finish by its deadline always goes to the next stage, as a timeout does."""
    retry_after_s: float = Field(1.0, ge=0, le=3600)
    """Retry-After advertised with 503 answers."""

    # --- circuit breaker -------------------------------------------------------------------
    breaker_failure_rate: float = Field(0.6, gt=0.0, le=1.0)
    """Share of failed calls, over the breaker's window, that opens a model stage's breaker. Well
    above the failure rate of a healthy model with a few bad inputs: with 30 % of requests failing,
    a 100-call window reaches 60 % with a probability of about 1e-9."""
    breaker_window: int = Field(100, ge=1, le=100_000)
    """Calls the breaker remembers."""
    breaker_min_calls: int = Field(20, ge=1, le=100_000)
    """Calls the window must hold before the breaker may open (at most breaker_window)."""
    breaker_recovery_s: float = Field(5.0, gt=0, le=86_400)
    """Seconds an open breaker waits before it lets one half-open probe through."""

    # --- result cache ----------------------------------------------------------------------
    cache_max_bytes: int = Field(0, ge=0, le=1 << 40)
    """Bytes each deployment's result cache may hold (the primary's answers to inputs seen before; each
    entry counts its arrays and 256 bytes); the least recently used go first. 0 (the default) turns the
    cache off. A request with ``Cache-Control: no-cache`` neither reads nor fills it, and no request uses
    it while a rollout gathers evidence."""
    cache_ttl_s: float = Field(300.0, gt=0, le=86_400)
    """Seconds an entry of the result cache is served."""

    # --- model lifecycle -------------------------------------------------------------------
    state_path: str = ""
    """The lifecycle database (SQLite) of the service's models: aliases, rollouts, their evidence and
    every transition. Shared by the service's workers; keep it where it survives restarts. Empty:
    ``ballast/SERVICE.sqlite`` under BentoML's home."""
    lifecycle_sync_s: float = Field(1.0, gt=0, le=60)
    """How often each worker writes its rollout evidence and follows the shared state."""
    shadow_max_in_flight: int = Field(64, ge=1, le=10_000)
    """Shadow copies a worker holds at once (waiting, or running together on the candidate); beyond it
    a copy is dropped and counted."""
    shadow_tolerance: float = Field(0.05, ge=0, le=1)
    """How far a shadow's probabilities may be from production's and still agree (same class too)."""

    # --- audit trail -----------------------------------------------------------------------
    audit_key: SecretStr | None = None
    """The secret of the audit trail's input digests (HMAC-SHA-256; at least 16 characters). Set, the
    service writes one audit row per answered request; unset (the default for now), no audit trail."""
    audit_path: str = ""
    """The audit database (SQLite). Empty: ``ballast/SERVICE-audit.sqlite`` under BentoML's home."""
    audit_writer: Literal["process", "thread"] = "process"
    """Where the trail's rows are digested, chained and stored: ``process`` (a writer process per
    worker, fed in batches through a pipe: the worker pays for taking each row, the rest runs on
    another core when there is one) or ``thread`` (a thread of the worker: no extra process, about
    80 MB less per worker, more of the worker's CPU). docs/design/audit-trail.md has the costs."""
    audit_max_queue: int = Field(10_000, ge=1, le=10_000_000)
    """Audit rows a worker holds before they are written; beyond it a row is dropped and counted."""
    audit_overflow: Literal["drop", "fail_closed"] = "drop"
    """When the audit falls behind: ``drop`` (keep the metadata, shed the payloads: past half the
    queue no payload is captured; a row that finds the queue full is dropped and counted; every
    request is answered) or ``fail_closed`` (answer 503 with Retry-After, reason ``audit_behind``,
    while the queue is full)."""
    audit_payload_share: float = Field(0.0, ge=0.0, le=1.0)
    """Share of answered requests whose full input and output are kept too (redacted by the request
    fields' classification), in a table apart from the trail, for retraining; 0 = none."""
    audit_retain_days: float | None = Field(None, gt=0)
    """Days the trail's rows are kept (purged oldest first, the chain still verifiable); unset: for ever."""
    audit_payload_retain_days: float | None = Field(30.0, gt=0)
    """Days captured payloads are kept; unset: for ever."""
    feedback_retain_days: float | None = Field(None, gt=0)
    """Days labels are kept (by the time of their prediction); unset: for ever."""
    feedback_window_s: float = Field(86_400.0, gt=0, le=90 * 86_400.0)
    """The rolling window (by prediction time) of the label coverage and accuracy metrics."""

    # --- drift -------------------------------------------------------------------------------
    drift_enabled: bool = True
    """Watch each version's inputs and predictions against its reference sample (a model stored
    with ``reference_sample.npy``; without one, nothing is watched). docs/design/drift.md."""
    drift_window_rows: int = Field(1000, ge=10, le=1_000_000)
    """Rows per drift window (each worker fills its own)."""
    drift_window_s: float = Field(3600.0, gt=0)
    """A window also closes this long after it opened, however few rows it holds."""
    drift_min_rows: int = Field(500, ge=10)
    """A window closed by time with fewer rows decides nothing."""
    drift_alpha: float = Field(0.01, gt=0, lt=1)
    """False discovery rate of a window's tests across its features (Benjamini-Hochberg)."""
    drift_min_effect: float = Field(0.05, ge=0)
    """The smallest distance that counts as drift (numeric: reference standard deviations;
    categorical: Jensen-Shannon distance)."""
    drift_confirm_windows: int = Field(2, ge=1, le=100)
    """Consecutive windows a feature must drift in before its drift is confirmed."""
    drift_unseen_share: float = Field(0.01, gt=0, le=1)
    """Share of a window's rows with a category the reference never saw that raises its alarm."""
    performance_max_drop: float = Field(0.05, gt=0, lt=1)
    """The fall of a held-out figure (ROC AUC, accuracy) on labelled feedback that raises the
    performance alarm, when the one-sided test also says so."""
    performance_alpha: float = Field(0.01, gt=0, lt=1)
    """Significance of the one-sided test for a drop of a held-out figure."""
    performance_min_labels: int = Field(200, ge=1)
    """Labelled rows in the feedback window needed before a figure is judged ("not enough labels")."""
    performance_min_per_class: int = Field(20, ge=1)
    """For ROC AUC: labelled rows of each class needed."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.drift_min_rows > self.drift_window_rows:
            raise ValueError(
                f"drift_min_rows must be at most drift_window_rows, "
                f"got {self.drift_min_rows} > {self.drift_window_rows}"
            )
        if self.audit_key is not None and len(self.audit_key.get_secret_value()) < 16:
            raise ValueError("audit_key must be at least 16 characters")
        if self.fallback_reserve_ms >= self.request_timeout_ms:
            raise ValueError(
                "fallback_reserve_ms must be below request_timeout_ms, got "
                f"{self.fallback_reserve_ms} >= {self.request_timeout_ms}"
            )
        if self.breaker_min_calls > self.breaker_window:
            raise ValueError(
                "breaker_min_calls must not exceed breaker_window, got "
                f"{self.breaker_min_calls} > {self.breaker_window}"
            )
        self.stage("")  # the defaults make a valid stage
        for name in self.stages:
            self.stage(name)
        return self

    def stage(self, model: str, declared: Mapping[str, Any] | None = None) -> StageSettings:
        """The settings of the stage that runs ``model``: these defaults, then ``declared`` (the
        service's), then ``BALLAST_STAGES[model]``."""
        values = {name: getattr(self, name) for name in STAGE_FIELDS}
        values.update(declared or {})
        values.update(self.stages.get(model, {}))
        try:
            return StageSettings(**values)
        except ValidationError as exc:
            where = f"stage {model!r}" if model else "the stage defaults"
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']} (got {e['input']!r})"
                if e["loc"]
                else e["msg"]
                for e in exc.errors()
            )
            raise ValueError(f"{where}: {problems}") from None


class DrillSettings(BaseSettings):
    """Fault injection and measurement switches, for drills and benchmarks only. Environment
    variables use the prefix ``BALLAST_``."""

    model_config = SettingsConfigDict(env_prefix="BALLAST_", extra="ignore", validate_default=True, frozen=True)

    fault_error_rate: float = Field(0.0, ge=0.0, le=1.0)
    """Share of rows on which the primary model raises. 0 (off) by default."""
    fault_slow_rate: float = Field(0.0, ge=0.0, le=1.0)
    """Share of primary-model calls made slow by ``fault_slow_ms``. 0 (off) by default."""
    fault_slow_ms: float = Field(0.0, ge=0.0, le=600_000)
    """Delay added to a slowed primary call."""
    fault_seed: int | None = None
    """Seed of the fault injector's random choices, for repeatable drills."""
    content_checks: bool = True
    """Validation layers 2 and 3 (finite values, ranges, business rules). Turn off only to measure
    their cost: the schema layer (types, shapes, categories) always runs."""
    metrics_enabled: bool = True
    """Prometheus metrics and the per-request Prometheus hook. Turn off only to measure their cost."""

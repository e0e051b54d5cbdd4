from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from runtime import (
    BreakerState,
    DrillSettings,
    FallbackReason,
    FaultInjector,
    OnnxModel,
    Outcome,
    Pipeline,
    PrometheusHook,
    RequestRecord,
    RuleStage,
    RuntimeMetrics,
    Settings,
    ShedReason,
    TensorSchema,
    ValidationFailed,
)
from runtime.observe.metrics import LATENCY_BUCKETS, MetricBuffer


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_the_hook_records_what_happened(registry: CollectorRegistry, metrics: RuntimeMetrics) -> None:
    hook = PrometheusHook(metrics)
    record = RequestRecord(
        "r",
        "fraud",
        served_by="fallback",
        total_s=0.02,
        queue_wait_s=0.004,
        batch_rows=8,
        fallbacks=[("primary", "fallback", FallbackReason.TIMEOUT)],
    )
    hook.on_request(Outcome.FALLBACK, record)
    hook.on_request(Outcome.REJECTED, RequestRecord("s", "fraud", failed_rules=("range", "type")))
    assert value(registry, "ballast_requests_total", pipeline="fraud", version="", outcome="fallback") == 1
    assert value(registry, "ballast_requests_total", pipeline="fraud", version="", outcome="rejected") == 1
    assert value(
        registry,
        "ballast_request_duration_seconds_sum",
        pipeline="fraud",
        version="",
        stage="fallback",
        outcome="fallback",
    ) == pytest.approx(0.02)
    assert value(registry, "ballast_queue_wait_seconds_count", pipeline="fraud", stage="fallback") == 1
    assert (
        value(
            registry,
            "ballast_fallbacks_total",
            pipeline="fraud",
            from_stage="primary",
            to_stage="fallback",
            reason="timeout",
        )
        == 1
    )
    assert value(registry, "ballast_validation_failures_total", pipeline="fraud", rule="range") == 1
    assert value(registry, "ballast_validation_failures_total", pipeline="fraud", rule="type") == 1


def test_batch_shed_breaker_and_hook_error_metrics(registry: CollectorRegistry, metrics: RuntimeMetrics) -> None:
    batches = metrics.batch_observer("m", "2")
    batches.on_batch(16, 0.003, ok=True)
    batches.on_batch(4, 0.001, ok=False)
    batches.on_shed(ShedReason.QUEUE_FULL)
    metrics.on_breaker_change("m", BreakerState.OPEN)
    metrics.on_hook_error("AuditHook")
    assert value(registry, "ballast_batch_size_rows_sum", model="m", version="2") == 20
    assert value(registry, "ballast_inference_duration_seconds_count", model="m", version="2", status="ok") == 1
    assert value(registry, "ballast_inference_duration_seconds_count", model="m", version="2", status="error") == 1
    assert value(registry, "ballast_shed_total", model="m", reason="queue_full") == 1
    assert value(registry, "ballast_breaker_state", model="m") == 2
    assert value(registry, "ballast_breaker_transitions_total", model="m", state="open") == 1
    assert value(registry, "ballast_hook_errors_total", hook="AuditHook") == 1


async def test_buffered_series_reach_prometheus_within_the_flush_interval_and_equal_direct_ones() -> None:
    registry = CollectorRegistry()
    direct = Histogram("direct_seconds", "d", registry=registry, buckets=LATENCY_BUCKETS)
    buffered = Histogram("buffered_seconds", "b", registry=registry, buckets=LATENCY_BUCKETS)
    count = Counter("buffered_total", "c", registry=registry)
    buffer = MetricBuffer(flush_s=0.05)
    series, counter = buffer.histogram(buffered), buffer.counter(count)
    values = [0.0, 0.0005, 0.0007, 0.001, 0.3, 10.0, 11.0, *np.random.default_rng(0).exponential(0.05, 200)]
    for v in values:  # bucket bounds themselves included: "le" is inclusive
        direct.observe(v)
        series.observe(v)
        counter.inc()
    assert value(registry, "buffered_seconds_count") == 0, "written before the flush interval"
    assert value(registry, "buffered_total") == 0
    await asyncio.sleep(0.1)
    for sample in next(iter(direct.collect())).samples:
        name = sample.name.replace("direct", "buffered")
        assert value(registry, name, **sample.labels) == pytest.approx(sample.value), name
    assert value(registry, "buffered_total") == len(values)
    counter.inc(2)  # the next increment schedules the next flush
    await asyncio.sleep(0.1)
    assert value(registry, "buffered_total") == len(values) + 2


def test_outside_an_event_loop_every_increment_is_written_at_once() -> None:
    registry = CollectorRegistry()
    count = Counter("now_total", "c", registry=registry)
    MetricBuffer(flush_s=60).counter(count).inc()
    assert value(registry, "now_total") == 1


async def test_a_pipeline_reports_through_its_metrics(
    load_model: Callable[..., OnnxModel], registry: CollectorRegistry, metrics: RuntimeMetrics
) -> None:
    primary = load_model("affine", name="primary", version="5")
    primary.faults = FaultInjector(error_rate=1.0)
    pipeline = Pipeline.build(
        "p",
        models=[primary],
        schema=TensorSchema(primary.signature, max_rows=4),
        fallback_rules=RuleStage("rules", "1", lambda r: {"y": np.zeros((r.rows, 4), np.float32)}),
        settings=Settings(breaker_failure_rate=1.0, breaker_window=2, breaker_min_calls=2, warmup_runs=1),
        metrics=metrics,
    )
    await pipeline.start()
    for _ in range(3):
        assert (await pipeline.predict({"x": [[1, 2, 3, 4]]})).served_by == "rules"
    with pytest.raises(ValidationFailed):
        await pipeline.predict({"x": [[1, 2, 3]]})
    await pipeline.close()
    assert value(registry, "ballast_requests_total", pipeline="p", version="5", outcome="fallback") == 3
    assert value(registry, "ballast_requests_total", pipeline="p", version="5", outcome="rejected") == 1
    assert (
        value(
            registry,
            "ballast_fallbacks_total",
            pipeline="p",
            from_stage="primary",
            to_stage="rules",
            reason="error",
        )
        == 2
    )
    assert (
        value(
            registry,
            "ballast_fallbacks_total",
            pipeline="p",
            from_stage="primary",
            to_stage="rules",
            reason="circuit_open",
        )
        == 1
    )
    assert value(registry, "ballast_breaker_state", model="primary") == 2
    assert (
        value(registry, "ballast_inference_duration_seconds_count", model="primary", version="5", status="error") == 2
    )
    assert value(registry, "ballast_validation_failures_total", pipeline="p", rule="shape") == 1


def test_metrics_work_in_prometheus_multiprocess_mode_when_the_dir_is_set_after_import(
    tmp_path: Path,
) -> None:
    """As in a BentoML worker: the service module (and so runtime) is imported first, then the
    worker sets PROMETHEUS_MULTIPROC_DIR, then the pipeline is built."""
    script = (
        "import os, sys\n"
        "import runtime\n"
        "os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1]\n"
        "m = runtime.default_metrics()\n"
        "m.requests.labels('fraud', 'v1', 'success').inc(3)\n"
        "m.on_breaker_change('primary', runtime.BreakerState.OPEN)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[3],
    )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    assert value(registry, "ballast_requests_total", pipeline="fraud", version="v1", outcome="success") == 3
    assert value(registry, "ballast_breaker_state", model="primary") == 2


async def test_metrics_can_be_switched_off(
    load_model: Callable[..., OnnxModel], registry: CollectorRegistry, metrics: RuntimeMetrics
) -> None:
    model = load_model("affine")
    pipeline = Pipeline.build(
        "quiet",
        models=[model],
        schema=TensorSchema(model.signature, max_rows=4),
        settings=Settings(warmup_runs=0),
        drills=DrillSettings(metrics_enabled=False),
        metrics=metrics,
    )
    await pipeline.predict({"x": [[1, 2, 3, 4]]})
    await pipeline.close()
    assert value(registry, "ballast_requests_total", pipeline="quiet", version="1", outcome="success") == 0
    assert value(registry, "ballast_batch_size_rows_count", model="affine", version="1") == 0

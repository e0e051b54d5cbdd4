"""The result cache: keyed by the version and the validated input, bounded, expiring, and used by
the pipeline only for the primary's answers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from runtime import FaultInjector, OnnxModel, Pipeline, RuleStage, RuntimeMetrics, Settings, TensorSchema
from runtime.engine.cache import ENTRY_OVERHEAD_BYTES, ResultCache, input_digest


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def outputs(value: float, width: int = 4) -> dict[str, np.ndarray]:
    return {"y": np.full((1, width), value, np.float32)}


def test_equal_inputs_share_a_key_and_versions_never_do() -> None:
    x = {"x": np.array([[1, 2, 3, 4]], np.float32)}
    assert input_digest(x) == input_digest({"x": np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)})
    assert input_digest(x) != input_digest({"x": np.array([[1, 2, 3, 5]], np.float32)})
    assert input_digest(x) != input_digest({"x": np.array([[1, 2, 3, 4]], np.float64)})
    assert input_digest(x) != input_digest({"z": x["x"]})
    one = ResultCache("sha-a", max_bytes=1 << 20, ttl_s=60)
    other = ResultCache("sha-b", max_bytes=1 << 20, ttl_s=60)
    assert one.key(x) != other.key(x)


def test_entries_are_bounded_in_bytes_the_least_recently_used_go_first_and_expire() -> None:
    clock = Clock()
    entry = ENTRY_OVERHEAD_BYTES + 16  # one row of four float32
    cache = ResultCache("v", max_bytes=2 * entry, ttl_s=10, timer=clock)
    cache.put(b"\0", outputs(0))
    cache.put(b"\1", outputs(1))
    assert cache.get(b"\0") is not None  # now \1 is the least recently used
    cache.put(b"\2", outputs(2))
    assert len(cache) == 2
    assert cache.size_bytes == 2 * entry
    assert cache.get(b"\1") is None
    assert cache.evicted == 1
    found = cache.get(b"\2")
    assert found is not None
    np.testing.assert_array_equal(found["y"], outputs(2)["y"])
    clock.now += 11
    assert cache.get(b"\2") is None  # expired
    assert cache.evicted == 1  # expiry is not eviction
    cache.put(b"huge", outputs(1, width=10_000))  # larger than the whole cache: not kept
    assert cache.get(b"huge") is None
    with pytest.raises(ValueError, match="a cache needs max_bytes >= 256"):
        ResultCache("v", max_bytes=100, ttl_s=10)


def test_a_cached_answer_keeps_nothing_of_its_batch_alive() -> None:
    cache = ResultCache("v", max_bytes=1 << 20, ttl_s=10)
    batch = np.zeros((64, 4), np.float32)
    cache.put(b"k", {"y": batch[3:4]})
    found = cache.get(b"k")
    assert found is not None
    assert found["y"].base is None  # a copy, not a view of the 64-row batch


async def test_the_pipeline_answers_repeats_from_the_cache_and_caches_only_the_primary(
    load_model: Callable[..., OnnxModel], metrics: RuntimeMetrics
) -> None:
    primary = load_model("affine", name="primary")
    cache = ResultCache("sha", max_bytes=1 << 20, ttl_s=60, observer=metrics.cache_observer("p", "1"))
    pipeline = Pipeline.build(
        "p",
        models=[primary],
        schema=TensorSchema(primary.signature, max_rows=4),
        fallback_rules=RuleStage("rules", "1", lambda r: {"y": np.zeros((r.rows, 4), np.float32)}),
        settings=Settings(warmup_runs=1),
        metrics=metrics,
        cache=cache,
    )
    await pipeline.start()
    runs = primary.compute.observations
    first = await pipeline.predict({"x": [[1, 2, 3, 4]]})
    again = await pipeline.predict({"x": [[1.0, 2.0, 3.0, 4.0]]})
    assert primary.compute.observations == runs + 1  # the second answer did not run the model
    np.testing.assert_array_equal(first.outputs["y"], again.outputs["y"])
    assert (again.served_by, again.degraded) == ("primary", False)
    await pipeline.predict({"x": [[1, 2, 3, 4]]}, cache=False)  # bypassed: the model runs
    assert primary.compute.observations == runs + 2
    primary.faults = FaultInjector(error_rate=1.0)
    degraded = await pipeline.predict({"x": [[9, 9, 9, 9]]})
    assert degraded.served_by == "rules"
    primary.faults = None
    healed = await pipeline.predict({"x": [[9, 9, 9, 9]]})
    assert healed.served_by == "primary"  # the rule stage's answer was not cached
    metrics.buffer.flush()
    hits = metrics.cache_lookups.labels("p", "1", "hit")._value.get()
    assert hits == 1
    await pipeline.close()

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from runtime import (
    AdaptiveBatcher,
    BreakerState,
    ChainExhausted,
    CircuitBreaker,
    DeadlineExceeded,
    FaultInjector,
    InferenceChain,
    LatencyModel,
    ModelStage,
    OnnxModel,
    Overloaded,
    RequestRecord,
    RuleStage,
    ValidatedRequest,
)

X = np.arange(8, dtype=np.float32).reshape(2, 4)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Batches:
    def __init__(self) -> None:
        self.count = 0

    def on_batch(self, rows: int, seconds: float, ok: bool) -> None:
        self.count += 1

    def on_shed(self, reason: str) -> None:
        pass


def stage(
    model: OnnxModel,
    *,
    reserve_s: float = 0.0,
    clock: Clock | None = None,
    latency: LatencyModel | None = None,
    observer: Batches | None = None,
) -> ModelStage:
    batcher = AdaptiveBatcher(
        model.run_async,
        max_batch_size=8,
        max_wait_s=0.0,
        max_in_flight=1,
        max_queue_rows=64,
        latency=latency,
        observer=observer,
    )
    breaker = CircuitBreaker(
        model.name, failure_rate=1.0, window=3, min_calls=3, recovery_s=10.0, clock=clock or time.monotonic
    )
    return ModelStage(model, batcher, breaker, reserve_s=reserve_s)


def rules() -> RuleStage:
    return RuleStage("rules", "rules-1", lambda request: {"y": np.zeros((request.rows, 4), np.float32)})


def request() -> ValidatedRequest:
    return ValidatedRequest(inputs={"x": X}, rows=2)


async def run(chain: InferenceChain, budget_s: float = 2.0) -> tuple[Any, RequestRecord]:
    record = RequestRecord("r1", "test")
    result = await chain.run(request(), time.monotonic() + budget_s, record)
    return result, record


async def test_the_primary_answers_when_healthy(load_model: Callable[..., OnnxModel]) -> None:
    chain = InferenceChain([stage(load_model("affine", name="primary", version="7"))], rules())
    result, record = await run(chain)
    np.testing.assert_array_equal(result.outputs["y"], X * 2 + 1)
    assert (result.served_by, result.degraded, result.model_version) == ("primary", False, "7")
    assert record.served_by == "primary"
    assert record.batch_rows == 2
    assert record.fallbacks == []


async def test_a_raising_primary_falls_back_to_the_next_model(load_model: Callable[..., OnnxModel]) -> None:
    primary = load_model("affine", name="primary")
    primary.faults = FaultInjector(error_rate=1.0)
    chain = InferenceChain([stage(primary), stage(load_model("affine_b", name="fallback"))], rules())
    result, record = await run(chain)
    np.testing.assert_array_equal(result.outputs["y"], X * 3)
    assert (result.served_by, result.degraded) == ("fallback", True)
    assert record.fallbacks == [("primary", "fallback", "error")]


async def test_a_hanging_primary_is_abandoned_in_time_for_the_fallback(
    load_model: Callable[..., OnnxModel],
) -> None:
    primary = load_model("affine", name="primary")
    primary.faults = FaultInjector(slow_rate=1.0, slow_s=1.0)
    chain = InferenceChain([stage(primary, reserve_s=0.15), stage(load_model("affine_b", name="fallback"))], rules())
    started = time.monotonic()
    result, record = await run(chain, budget_s=0.4)
    elapsed = time.monotonic() - started
    assert result.served_by == "fallback"
    assert record.fallbacks == [("primary", "fallback", "timeout")]
    assert elapsed < 0.4, f"answered after {elapsed:.3f} s, past the 0.4 s deadline"


@pytest.mark.parametrize("broken", ["nan", "wrong_shape"])
async def test_invalid_output_falls_back(load_model: Callable[..., OnnxModel], broken: str) -> None:
    fallback = load_model("affine_b", name="fallback")
    chain = InferenceChain(
        [stage(load_model(broken, name="primary")), stage(fallback)],
        rules(),
        outputs=fallback.signature.outputs,
    )
    result, record = await run(chain)
    assert result.served_by == "fallback"
    assert record.fallbacks == [("primary", "fallback", "invalid_output")]


async def test_a_chain_begun_at_a_fallback_skips_the_stages_before_it(load_model: Callable[..., OnnxModel]) -> None:
    primary = load_model("affine", name="primary")
    primary.faults = FaultInjector(error_rate=1.0)  # never asked: a failure here would show
    fallback = load_model("affine_b", name="fallback")
    chain = InferenceChain([stage(primary), stage(fallback)], rules())
    record = RequestRecord("r1", "test")
    result = await chain.run(request(), time.monotonic() + 2.0, record, start=1)
    np.testing.assert_array_equal(result.outputs["y"], X * 3)
    assert (result.served_by, result.degraded, record.fallbacks) == ("fallback", False, [])  # asked for: not degraded
    fallback.faults = FaultInjector(error_rate=1.0)
    record = RequestRecord("r2", "test")
    result = await chain.run(request(), time.monotonic() + 2.0, record, start=1)
    assert (result.served_by, result.degraded, record.fallbacks) == ("rules", True, [("fallback", "rules", "error")])


async def test_when_every_model_fails_the_rules_answer_degraded(load_model: Callable[..., OnnxModel]) -> None:
    primary, fallback = load_model("affine", name="primary"), load_model("affine_b", name="fallback")
    primary.faults = fallback.faults = FaultInjector(error_rate=1.0)
    chain = InferenceChain([stage(primary), stage(fallback)], rules())
    result, record = await run(chain)
    assert (result.served_by, result.degraded, result.model_version) == ("rules", True, "rules-1")
    np.testing.assert_array_equal(result.outputs["y"], np.zeros((2, 4)))
    assert record.fallbacks == [("primary", "fallback", "error"), ("fallback", "rules", "error")]


async def test_without_rules_a_chain_that_fails_everywhere_raises(
    load_model: Callable[..., OnnxModel],
) -> None:
    primary = load_model("affine", name="primary")
    primary.faults = FaultInjector(error_rate=1.0)
    with pytest.raises(ChainExhausted):
        await run(InferenceChain([stage(primary)]))
    slow = load_model("affine_b", name="slow")
    slow.faults = FaultInjector(slow_rate=1.0, slow_s=0.5)
    with pytest.raises(DeadlineExceeded):
        await run(InferenceChain([stage(slow)]), budget_s=0.1)


async def test_an_open_breaker_skips_the_primary_until_a_healthy_probe(
    load_model: Callable[..., OnnxModel],
) -> None:
    clock = Clock()
    primary = load_model("affine", name="primary")
    primary.faults = FaultInjector(error_rate=1.0)
    batches = Batches()
    primary_stage = stage(primary, clock=clock, observer=batches)
    chain = InferenceChain([primary_stage, stage(load_model("affine_b", name="fallback"))], rules())
    for _ in range(3):
        await run(chain)
    assert primary_stage.breaker.state is BreakerState.OPEN
    assert batches.count == 3
    for _ in range(5):
        result, record = await run(chain)
        assert result.served_by == "fallback"
        assert record.fallbacks == [("primary", "fallback", "circuit_open")]
    assert batches.count == 3, "the primary was called while its breaker was open"
    primary.faults = None  # the primary heals
    clock.now += 10
    result, _ = await run(chain)
    assert result.served_by == "primary"
    assert batches.count == 4
    assert primary_stage.breaker.state is BreakerState.CLOSED


async def test_a_deadline_shed_moves_on_to_the_next_stage_whatever_the_policy(
    load_model: Callable[..., OnnxModel],
) -> None:
    slow_estimate = LatencyModel()
    slow_estimate.observe(1, 5.0)
    slow_estimate.observe(8, 5.0)
    for policy in ("reject", "degrade"):
        primary = load_model("affine", name="primary")
        chain = InferenceChain(
            [stage(primary, latency=slow_estimate), stage(load_model("affine_b", name="fallback"))],
            rules(),
            shed_policy=policy,
        )
        result, record = await run(chain)
        assert result.served_by == "fallback"
        assert record.fallbacks == [("primary", "fallback", "overloaded")]
        assert chain.primary.breaker.state is BreakerState.CLOSED  # shedding is not the model's fault


async def test_a_deadline_shed_then_no_time_left_is_a_shed_not_an_outage(
    load_model: Callable[..., OnnxModel],
) -> None:
    """The primary sheds (cannot finish in time), the fallback has no time left: the caller hears
    503 overloaded with Retry-After, not "no model could answer" (found by fuzzing a 0.3 ms deadline)."""
    slow_estimate = LatencyModel()
    slow_estimate.observe(1, 5.0)
    slow_estimate.observe(8, 5.0)
    primary = stage(load_model("affine", name="primary"), latency=slow_estimate)
    late = stage(load_model("affine_b", name="fallback"), reserve_s=5.0)  # leaves itself no time
    with pytest.raises(Overloaded) as shed:
        await run(InferenceChain([primary, late]))
    assert shed.value.reason == "deadline"


async def test_other_sheds_reject_or_degrade_by_policy(load_model: Callable[..., OnnxModel]) -> None:
    def chain(policy: str) -> InferenceChain:
        primary = stage(load_model("affine", name="primary"))
        return InferenceChain([primary, stage(load_model("affine_b", name="fallback"))], rules(), shed_policy=policy)  # type: ignore[arg-type]

    reject = chain("reject")
    await reject.primary.batcher.close()  # a closing batcher sheds with reason shutting_down
    with pytest.raises(Overloaded) as shed:
        await run(reject)
    assert shed.value.reason == "shutting_down"
    degrade = chain("degrade")
    await degrade.primary.batcher.close()
    result, record = await run(degrade)
    assert result.served_by == "fallback"
    assert record.fallbacks == [("primary", "fallback", "overloaded")]


def test_every_stage_must_answer_what_the_chain_promises(load_model: Callable[..., OnnxModel]) -> None:
    with pytest.raises(KeyError, match="no output 'y'"):
        InferenceChain([stage(load_model("affine")), stage(load_model("classifier"))])
    with pytest.raises(ValueError, match="at least one model stage"):
        InferenceChain([])


async def test_only_timeouts_of_computing_requests_count_against_the_breaker(
    load_model: Callable[..., OnnxModel],
) -> None:
    import asyncio

    primary = load_model("affine", name="primary")
    primary.faults = FaultInjector(slow_rate=1.0, slow_s=0.5)  # one batch at a time, each 0.5 s
    chain = InferenceChain([stage(primary, reserve_s=0.1), stage(load_model("affine_b", name="fallback"))], rules())
    # one request computes (and times out), the others time out while queued behind it
    results = await asyncio.gather(*(run(chain, budget_s=0.3) for _ in range(5)))
    assert {result.served_by for result, _ in results} == {"fallback"}
    window = chain.primary.breaker
    assert window.state is BreakerState.CLOSED
    assert window._failures == 1  # the computing one; the queued four are overload, not the model

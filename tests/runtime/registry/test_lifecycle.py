"""A rollout on real pipelines and a real SQLite store, on a fake clock: shadow, canary stages,
approval, rollback; two workers sharing the store; a restart in the middle."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from runtime import BallastError, FaultInjector, OnnxModel, Pipeline, RuntimeMetrics, Settings, TensorSchema
from runtime.core.codes import Arm
from runtime.registry import (
    BelowFloor,
    Lifecycle,
    LifecycleStore,
    NotAllowed,
    Phase,
    Policy,
    Registry,
    SignatureMismatch,
)
from runtime.registry.lifecycle import shadow_rows

# version -> model file: "2" answers as "1" does (y = 2x + 1), "3" is silently wrong (y = 3x), "4" takes
# other inputs
FILES = {"1": "affine", "2": "affine", "3": "affine_b", "4": "classifier"}
POLICY = Policy(
    stages=(0.5, 1.0), shadow_min_requests=60, stage_min_s=10, stage_min_requests=40, latency_min_samples=40
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make(
    load_model: Callable[..., OnnxModel], metrics: RuntimeMetrics, tmp_path: Path
) -> Callable[[str, Clock], Lifecycle]:
    def loader(version: str) -> Pipeline:
        model = load_model(FILES[version], name="m", version=version)
        return Pipeline.build(
            "m",
            models=[model],
            schema=TensorSchema(model.signature, max_rows=4),
            settings=Settings(warmup_runs=1),
            metrics=metrics,
        )

    def build(worker: str, clock: Clock) -> Lifecycle:
        registry = Registry("m", loader, lambda: list(FILES), default="1")
        store = LifecycleStore(tmp_path / "lifecycle.sqlite", clock)
        return Lifecycle(registry, store, worker, policy=POLICY, clock=clock, metrics=metrics)

    return build


@pytest.fixture
async def worker(make: Callable[[str, Clock], Lifecycle]) -> AsyncIterator[tuple[Lifecycle, Clock]]:
    clock = Clock()
    lifecycle = make("w1", clock)
    await lifecycle.start(sync=False)
    yield lifecycle, clock
    await lifecycle.close()
    await lifecycle.registry.close()


class Served(dict[Arm, int]):
    """Requests served per arm, and how many of them failed (no answer, so no shadow copy: a chain
    that times out on a loaded machine)."""

    failed: int = 0


async def serve(lifecycle: Lifecycle, requests: int, start: int = 0) -> Served:
    """Requests with distinct routing keys, answered as the service does: pick, predict, count, shadow."""
    arms = Served({Arm.PRODUCTION: 0, Arm.CANARY: 0})
    for i in range(start, start + requests):
        pipeline, arm = lifecycle.pick(f"caller-{i}")
        payload = {"x": [[i % 7, 1, 2, 3]]}
        try:
            answer = await pipeline.predict(payload)
        except BallastError:
            lifecycle.answered(arm, True, 0.01)
            arms.failed += 1
        else:
            lifecycle.answered(arm, answer.degraded, 0.01)
            lifecycle.shadow(answer)
        arms[arm] += 1
    await lifecycle.mirror.wait()
    return arms


def shadow_dropped(lifecycle: Lifecycle, registry: CollectorRegistry) -> int:
    """Copies the mirror dropped beyond its in-flight bound (counted; the counters are buffered)."""
    assert lifecycle.metrics is not None
    lifecycle.metrics.buffer.flush()
    return int(registry.get_sample_value("ballast_shadow_dropped_total", {"model": "m"}) or 0)


async def test_a_good_candidate_goes_from_shadow_to_production_with_an_approval(
    worker: tuple[Lifecycle, Clock],
) -> None:
    lifecycle, clock = worker
    assert lifecycle.describe()["production"] == "1"
    record = await lifecycle.begin("2", "operator:ana")
    assert (record.state, record.previous) == (Phase.SHADOW, "1")
    await past_shadow(lifecycle)
    arms = await serve(lifecycle, 200, start=1000)
    assert 60 < arms[Arm.CANARY] < 140  # half the routing keys
    clock.now += POLICY.stage_min_s
    await lifecycle.sync()
    assert lifecycle.describe()["rollout"]["stage"] == 2
    assert (await serve(lifecycle, 60, start=2000))[Arm.CANARY] == 60  # the last stage: every request
    clock.now += POLICY.stage_min_s
    await lifecycle.sync()
    assert lifecycle.describe()["rollout"]["state"] == Phase.AWAITING_APPROVAL
    with pytest.raises(NotAllowed, match="another principal must approve it"):
        await lifecycle.approve("operator:ana")
    promoted = await lifecycle.approve("approver:bo")
    assert promoted.state == Phase.WATCHING
    described = lifecycle.describe()
    assert (described["production"], described["previous"]) == ("2", "1")
    assert described["rollout"]["watch_until"] == clock.now + POLICY.watch_s
    prediction = await lifecycle.pick("anyone")[0].predict({"x": [[1, 1, 1, 1]]})
    assert prediction.model_version == "2"
    actions = [h["action"] for h in described["history"]]
    assert actions[:4] == ["approve", "alias", "await_approval", "advance"]
    assert await lifecycle.rollback("approver:bo", "the numbers look off") == "1"  # the warm previous, at once
    described = lifecycle.describe()
    assert (described["production"], described["previous"], described["rollout"]) == ("1", None, None)
    assert lifecycle.store.rollouts("m", limit=1)[0].state == Phase.ROLLED_BACK


async def test_a_silently_wrong_candidate_is_rolled_back_in_the_shadow(
    worker: tuple[Lifecycle, Clock], registry: CollectorRegistry
) -> None:
    lifecycle, _ = worker
    await lifecycle.begin("3", "operator:ana")
    assert registry.get_sample_value("ballast_rollout_stage", {"model": "m"}) == 0
    served = await serve(lifecycle, 30)
    await lifecycle.sync()
    dropped = shadow_dropped(lifecycle, registry)  # flushes the buffered counters too
    compared = {
        result: registry.get_sample_value("ballast_shadow_comparisons_total", {"model": "m", "result": result}) or 0
        for result in ("agreed", "disagreed", "failed")
    }
    assert compared["agreed"] == 0
    assert compared["disagreed"] >= 10  # 0 agreed of 10 is proof enough for the gate
    assert sum(compared.values()) + dropped + served.failed == 30  # every request accounted for
    assert registry.get_sample_value("ballast_rollbacks_total", {"model": "m", "reason": "agreement"}) == 1
    assert registry.get_sample_value("ballast_rollout_stage", {"model": "m"}) == -1
    assert lifecycle.describe()["rollout"] is None
    [ended] = lifecycle.store.rollouts("m", limit=1)
    assert ended.state == Phase.ROLLED_BACK
    assert ended.reason is not None
    assert ended.reason.startswith("the shadow agreed with production on 0 of")
    assert lifecycle.pick("x")[1] is Arm.PRODUCTION


async def test_a_candidate_that_does_not_fit_never_starts(worker: tuple[Lifecycle, Clock]) -> None:
    lifecycle, _ = worker
    with pytest.raises(SignatureMismatch):
        await lifecycle.begin("4", "operator:ana")
    assert lifecycle.store.active_rollout("m") is None
    with pytest.raises(NotAllowed, match="is production already"):
        await lifecycle.begin("1", "operator:ana")
    real = lifecycle.registry._loader
    lifecycle.registry._loader = lambda version: real("1")  # a name ("latest") that resolves to production
    with pytest.raises(NotAllowed, match=r"latest is production already \(1\)"):
        await lifecycle.begin("latest", "operator:ana")
    lifecycle.registry._loader = real
    assert lifecycle.store.active_rollout("m") is None


async def test_operators_pause_resume_and_abort(worker: tuple[Lifecycle, Clock], registry: CollectorRegistry) -> None:
    lifecycle, clock = worker
    await lifecycle.begin("2", "operator:ana")
    await lifecycle.pause("operator:ana", "looking at a dashboard")
    failed = 0
    for start in range(0, 400, 80):  # until enough copies were compared: a loaded machine drops a few
        failed += (await serve(lifecycle, 80, start=start)).failed
        await lifecycle.sync()
        paused = lifecycle.describe()["rollout"]
        assert paused["state"] == Phase.SHADOW  # paused: the gates do not move it
        evidence = paused["evidence"]
        compared = evidence["shadow_compared"]
        assert compared + evidence.get("shadow_dropped", 0) + failed == start + 80  # every request accounted for
        if compared >= POLICY.shadow_min_requests:
            break
    assert paused["evidence"]["shadow_compared"] >= POLICY.shadow_min_requests
    assert paused["evidence"]["shadow_mean_distance"] == 0.0  # the same model file answers alike
    assert paused["evidence"]["shadow_mean_inference_ms"] > 0
    assert not any(k.endswith("_sum") or "latency" in k for k in paused["evidence"])
    await lifecycle.resume("operator:ana", "fine")
    await lifecycle.sync()
    assert lifecycle.describe()["rollout"]["state"] == Phase.CANARY
    ended = await lifecycle.abort("operator:ana", "not today")
    assert ended.state == Phase.ABORTED
    assert lifecycle.pick("caller-1")[1] is Arm.PRODUCTION
    with pytest.raises(NotAllowed, match="no rollout in progress to approve"):
        await lifecycle.approve("approver:bo")
    clock.now += 1


async def test_workers_share_the_rollout_and_a_restart_resumes_it(make: Callable[[str, Clock], Lifecycle]) -> None:
    clock = Clock()
    first, second = make("w1", clock), make("w2", clock)
    await first.start(sync=False)
    await second.start(sync=False)
    await first.begin("2", "operator:ana")
    await second.sync()  # the other worker loads the candidate and mirrors too
    for start in range(0, 200, 40):  # 80 a round between them: enough, unless a loaded machine dropped copies
        await serve(first, 40, start=start)
        await serve(second, 40, start=500 + start)
        await first.sync()
        await second.sync()  # either worker may decide
        await first.sync()
        if first.describe()["rollout"]["state"] != Phase.SHADOW:
            break
    assert first.describe()["rollout"]["state"] == Phase.CANARY
    assert second.describe()["rollout"]["state"] == Phase.CANARY
    await second.close()
    await second.registry.close()
    restarted = make("w2", clock)  # a worker restarting in the middle of a rollout
    await restarted.start(sync=False)
    described = restarted.describe()["rollout"]
    assert (described["state"], described["share"]) == (Phase.CANARY, 0.5)
    arms = await serve(restarted, 100, start=3000)
    assert arms[Arm.CANARY] > 0
    for lifecycle in (first, restarted):
        await lifecycle.close()
        await lifecycle.registry.close()


async def test_with_no_rollout_every_request_goes_to_production(worker: tuple[Lifecycle, Clock]) -> None:
    lifecycle, _ = worker
    pipeline, arm = lifecycle.pick("anyone")
    assert (pipeline, arm) == (lifecycle.registry.pick(), Arm.PRODUCTION)
    lifecycle.answered(arm, False, 0.01)
    assert lifecycle.evidence.take() == {}  # nothing is counted when nothing is rolling out
    prediction = await pipeline.predict({"x": [[1, 2, 3, 4]]})
    np.testing.assert_array_equal(prediction.outputs["y"], [[3, 5, 7, 9]])


async def past_shadow(lifecycle: Lifecycle) -> None:
    """Serve the shadow phase until enough copies were compared and the rollout is in its canary:
    80 requests a round, at most five (a loaded machine drops copies beyond the mirror's in-flight
    bound, counted, so that one round may compare fewer than the policy needs)."""
    for start in range(0, 400, 80):
        assert (await serve(lifecycle, 80, start=start))[Arm.CANARY] == 0  # the shadow answers nobody
        await lifecycle.sync()
        if lifecycle.describe()["rollout"]["state"] != Phase.SHADOW:
            break
    assert lifecycle.describe()["rollout"]["state"] == Phase.CANARY


async def approved(lifecycle: Lifecycle, clock: Clock, version: str = "2") -> None:
    """A rollout of ``version`` through every stage to its approval."""
    await lifecycle.begin(version, "operator:ana")
    await past_shadow(lifecycle)
    for start in (1000, 2000):
        await serve(lifecycle, 200, start=start)
        clock.now += POLICY.stage_min_s
        await lifecycle.sync()
    assert lifecycle.describe()["rollout"]["state"] == Phase.AWAITING_APPROVAL
    assert (await lifecycle.approve("approver:bo")).state == Phase.WATCHING


async def test_a_version_failing_after_its_promotion_is_rolled_back_by_the_watch_then_cools_down(
    worker: tuple[Lifecycle, Clock], registry: CollectorRegistry
) -> None:
    lifecycle, clock = worker
    await approved(lifecycle, clock)
    assert lifecycle.comparing  # no answer from a cache while the watch compares
    with pytest.raises(NotAllowed, match="is production already; roll back to return to 1"):
        await lifecycle.abort("operator:ana", "too late for that")
    lifecycle.registry.production.pipeline.chain.primary.model.faults = FaultInjector(error_rate=0.2, seed=3)
    await serve(lifecycle, POLICY.watch_min_requests + 50, start=5000)
    clock.now += 1
    await lifecycle.sync()
    described = lifecycle.describe()
    assert (described["production"], described["previous"], described["rollout"]) == ("1", None, None)
    [ended] = lifecycle.store.rollouts("m", limit=1)
    assert ended.state == Phase.ROLLED_BACK
    assert ended.reason is not None
    assert ended.reason.startswith("after the promotion ")
    assert registry.get_sample_value("ballast_rollbacks_total", {"model": "m", "reason": "watch_failures"}) == 1
    assert [h["action"] for h in described["history"][:2]] == ["rollback", "alias"]  # one transaction
    prediction = await lifecycle.pick("anyone")[0].predict({"x": [[1, 1, 1, 1]]})
    assert prediction.model_version == "1"
    with pytest.raises(NotAllowed, match="no new rollout for another 6"):
        await lifecycle.begin("2", "operator:ana")
    clock.now += POLICY.cooldown_s
    assert (await lifecycle.begin("2", "operator:ana")).state == Phase.SHADOW


async def test_a_quiet_watch_ends_promoted_and_releases_the_previous_version(
    worker: tuple[Lifecycle, Clock], make: Callable[[str, Clock], Lifecycle]
) -> None:
    lifecycle, clock = worker
    await approved(lifecycle, clock)
    late = make("w2", clock)  # a worker that starts during the watch keeps the previous version warm too
    await late.start(sync=False)
    assert (late.describe()["production"], late.describe()["previous"]) == ("2", "1")
    await serve(lifecycle, POLICY.watch_min_requests + 50, start=5000)
    await lifecycle.sync()
    assert lifecycle.describe()["rollout"]["state"] == Phase.WATCHING
    clock.now += POLICY.watch_s
    await lifecycle.sync()
    await late.sync()
    for each in (lifecycle, late):
        described = each.describe()
        assert (described["production"], described["previous"], described["rollout"]) == ("2", None, None)
        assert not each.comparing
    assert lifecycle.store.rollouts("m", limit=1)[0].state == Phase.PROMOTED
    assert await lifecycle.rollback("approver:bo", "after all") == "1"  # loaded again from the store
    await late.sync()
    assert late.describe()["production"] == "1"
    await late.close()
    await late.registry.close()


def test_the_metric_floors_say_what_keeps_a_candidate_under_them() -> None:
    held_out = {"1": {"roc_auc": 0.90}, "2": {"roc_auc": 0.895}, "3": {"roc_auc": 0.80}, "4": {}}
    policy = Policy(metric_floors={"roc_auc": 0.01})
    assert policy.below_floors(held_out["2"], held_out["1"]) == []
    assert policy.below_floors(held_out["3"], held_out["1"]) == ["roc_auc 0.8000 is below production's 0.9000 - 0.01"]
    assert policy.below_floors(held_out["4"], held_out["1"]) == ["roc_auc is not in both versions' held-out metrics"]
    assert Policy.from_dict(policy.as_dict()) == policy


async def test_begin_checks_the_floors_with_the_stores_metadata(
    load_model: Callable[..., OnnxModel], metrics: RuntimeMetrics, tmp_path: Path
) -> None:
    def loader(version: str) -> Pipeline:
        model = load_model(FILES[version], name="m", version=version)
        return Pipeline.build(
            "m", models=[model], schema=TensorSchema(model.signature, max_rows=4), settings=Settings(warmup_runs=1)
        )

    held_out: dict[str, dict[str, Any]] = {"1": {"metrics": {"roc_auc": 0.90}}, "2": {"metrics": {"roc_auc": 0.85}}}
    registry = Registry("m", loader, lambda: list(FILES), default="1", metadata=lambda v: held_out.get(v, {}))
    lifecycle = Lifecycle(registry, LifecycleStore(tmp_path / "floors.sqlite"), "w1", clock=Clock())
    await lifecycle.start(sync=False)
    with pytest.raises(BelowFloor, match=r"roc_auc 0\.8500 is below production's 0\.9000 - 0\.01"):
        await lifecycle.begin("2", "operator:ana", {"metric_floors": {"roc_auc": 0.01}})
    assert lifecycle.store.active_rollout("m") is None
    assert (await lifecycle.begin("2", "operator:ana", {"metric_floors": {"roc_auc": 0.1}})).state == Phase.SHADOW
    await lifecycle.close()
    await registry.close()


def test_the_shadow_batches_a_cheap_model_in_runs_that_stay_on_the_loops_thread(
    load_model: Callable[..., OnnxModel],
) -> None:
    model = load_model("affine", name="m", version="1")
    model.config = dataclasses.replace(model.config, inline_max_s=100e-6)
    model.compute.a, model.compute.b, model.compute.resid_std = 10e-6, 20e-6, 0.0  # 10 us a row, 20 a run
    assert shadow_rows(model) == 8  # 8 rows: 100 us; 16 would be 180
    model.compute.b = 150e-6  # even one row would hop to a thread: then batch as much as allowed
    assert shadow_rows(model) == 64
    model.config = dataclasses.replace(model.config, inline_max_s=0.0)
    assert shadow_rows(model, most=32) == 32

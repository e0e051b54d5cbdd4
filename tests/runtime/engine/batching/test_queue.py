from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import AdaptiveBatcher, InvalidOutput, LatencyModel, ModelFailed, OnnxModel, Overloaded
from runtime.engine.batching.collate import Arrays


class Recorder:
    """A batch observer that keeps what it is told."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, bool]] = []
        self.shed: list[str] = []

    def on_batch(self, rows: int, seconds: float, ok: bool) -> None:
        self.batches.append((rows, ok))

    def on_shed(self, reason: str) -> None:
        self.shed.append(reason)


class Gated:
    """Wraps a real model's run: records each batch's inputs and holds the run until ``gate`` opens."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.gate = asyncio.Event()
        self.seen: list[Arrays] = []

    async def __call__(self, inputs: Arrays) -> Arrays:
        self.seen.append({k: v.copy() for k, v in inputs.items()})
        await self.gate.wait()
        return await self.model.run_async(inputs)


class Clock:
    """The batcher's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], bool], turns: int = 200) -> None:
    """Let the event loop run until ``condition`` holds (no wall-clock wait)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def rows_of(start: int, rows: int, features: int = 4) -> np.ndarray:
    return (np.arange(rows * features, dtype=np.float32).reshape(rows, features) + start * 1000).astype(np.float32)


def far() -> float:
    return time.monotonic() + 30


def make(run: Callable[[Arrays], Any], **kw: Any) -> AdaptiveBatcher:
    options: dict[str, Any] = {
        "max_batch_size": 64,
        "max_wait_s": 0.002,
        "max_in_flight": 1,
        "max_queue_rows": 10_000,
    }
    options.update(kw)
    return AdaptiveBatcher(run, **options)


@pytest.fixture(scope="module")
def affine_model(model_files: dict[str, Any]) -> Any:
    model = OnnxModel.from_path(model_files["affine"], name="affine", version="1")
    yield model
    model.close()


# --- every caller gets exactly its own rows ------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(st.tuples(st.integers(1, 9), st.floats(0, 0.004)), min_size=1, max_size=40),
    max_batch=st.integers(1, 16),
    in_flight=st.integers(1, 3),
    max_wait=st.sampled_from([0.0, 0.001, 0.003]),
)
def test_every_caller_gets_its_own_rows_and_batches_respect_the_limit(
    affine_model: OnnxModel,
    requests: list[tuple[int, float]],
    max_batch: int,
    in_flight: int,
    max_wait: float,
) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        batcher = make(
            affine_model.run_async,
            max_batch_size=max_batch,
            max_in_flight=in_flight,
            max_wait_s=max_wait,
            observer=recorder,
        )

        async def client(i: int, rows: int, delay: float) -> None:
            await asyncio.sleep(delay)
            x = rows_of(i, min(rows, max_batch))
            result = await batcher.submit({"x": x}, len(x), far())
            np.testing.assert_array_equal(result.outputs["y"], x * 2 + 1)
            assert result.batch_rows >= len(x)

        await asyncio.gather(*(client(i, r, d) for i, (r, d) in enumerate(requests)))
        await batcher.close()

    asyncio.run(scenario())
    assert recorder.batches, "no batch ran"
    assert all(ok for _, ok in recorder.batches)
    assert max(rows for rows, _ in recorder.batches) <= max_batch
    assert sum(rows for rows, _ in recorder.batches) == sum(min(r, max_batch) for r, _ in requests)


async def test_rows_that_arrive_while_a_batch_computes_form_the_next_batch(affine_model: OnnxModel) -> None:
    gated = Gated(affine_model)
    batcher = make(gated)
    first = asyncio.create_task(batcher.submit({"x": rows_of(0, 1)}, 1, far()))
    await until(lambda: len(gated.seen) == 1)
    rest = [asyncio.create_task(batcher.submit({"x": rows_of(i, 2)}, 2, far())) for i in range(1, 11)]
    await until(lambda: batcher.queued_rows == 20)
    gated.gate.set()
    await asyncio.gather(first, *rest)
    assert [len(b["x"]) for b in gated.seen] == [1, 20]
    await batcher.close()


# --- cancellation and races -------------------------------------------------------------------


async def test_a_cancelled_request_is_dropped_before_compute(affine_model: OnnxModel) -> None:
    gated = Gated(affine_model)
    batcher = make(gated)
    blocker = asyncio.create_task(batcher.submit({"x": rows_of(0, 1)}, 1, far()))
    await until(lambda: len(gated.seen) == 1)
    doomed = asyncio.create_task(batcher.submit({"x": rows_of(7, 3)}, 3, far()))
    kept = asyncio.create_task(batcher.submit({"x": rows_of(8, 2)}, 2, far()))
    await until(lambda: batcher.queued_rows == 5)
    doomed.cancel()
    gated.gate.set()
    await blocker
    result = await kept
    with pytest.raises(asyncio.CancelledError):
        await doomed
    np.testing.assert_array_equal(result.outputs["y"], rows_of(8, 2) * 2 + 1)
    assert [len(b["x"]) for b in gated.seen] == [1, 2]
    assert batcher.queued_rows == 0
    await batcher.close()


async def test_random_cancellations_never_break_the_batcher(affine_model: OnnxModel) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    batcher = make(affine_model.run_async, max_batch_size=8, max_in_flight=2)
    rng = np.random.default_rng(3)
    tasks = []
    for i in range(300):
        x = rows_of(i, int(rng.integers(1, 5)))
        tasks.append((x, asyncio.create_task(batcher.submit({"x": x}, len(x), far()))))
        if rng.random() < 0.3:
            await asyncio.sleep(float(rng.random()) * 0.001)
        if rng.random() < 0.3:
            tasks[int(rng.integers(0, len(tasks)))][1].cancel()
    outcomes = await asyncio.gather(*(t for _, t in tasks), return_exceptions=True)
    for (x, _), outcome in zip(tasks, outcomes, strict=True):
        if not isinstance(outcome, asyncio.CancelledError):
            assert not isinstance(outcome, BaseException), outcome
            np.testing.assert_array_equal(outcome.outputs["y"], x * 2 + 1)
    await batcher.close()
    assert errors == []
    assert batcher.queued_rows == 0
    assert batcher.in_flight == 0


async def test_close_drains_admitted_requests_then_refuses(affine_model: OnnxModel) -> None:
    batcher = make(affine_model.run_async, max_batch_size=4)
    tasks = [asyncio.create_task(batcher.submit({"x": rows_of(i, 2)}, 2, far())) for i in range(20)]
    await asyncio.sleep(0)
    await batcher.close(drain=True)
    assert all(t.done() and not t.cancelled() and t.exception() is None for t in tasks)
    with pytest.raises(Overloaded) as refused:
        await batcher.submit({"x": rows_of(0, 1)}, 1, far())
    assert refused.value.reason == "shutting_down"


# --- admission and shedding ---------------------------------------------------------------------


async def test_a_full_queue_refuses_with_overloaded(affine_model: OnnxModel) -> None:
    gated = Gated(affine_model)
    recorder = Recorder()
    batcher = make(gated, max_batch_size=4, max_queue_rows=8, observer=recorder)
    blocker = asyncio.create_task(batcher.submit({"x": rows_of(0, 4)}, 4, far()))
    await until(lambda: len(gated.seen) == 1)
    queued = [asyncio.create_task(batcher.submit({"x": rows_of(i, 4)}, 4, far())) for i in (1, 2)]
    await until(lambda: batcher.queued_rows == 8)
    with pytest.raises(Overloaded) as refused:
        await batcher.submit({"x": rows_of(3, 1)}, 1, far())
    assert refused.value.reason == "queue_full"
    assert refused.value.retry_after_s == 1.0
    gated.gate.set()
    await asyncio.gather(blocker, *queued)
    assert recorder.shed == ["queue_full"]
    await batcher.close()


async def test_a_request_that_cannot_meet_its_deadline_is_shed_at_admission(affine_model: OnnxModel) -> None:
    latency = LatencyModel()
    latency.observe(1, 0.5)
    latency.observe(64, 0.5)
    clock = Clock()
    batcher = make(affine_model.run_async, latency=latency, clock=clock)
    with pytest.raises(Overloaded) as refused:
        await batcher.submit({"x": rows_of(0, 1)}, 1, clock.now + 0.499)
    assert refused.value.reason == "deadline"
    result = await batcher.submit({"x": rows_of(0, 1)}, 1, clock.now + 0.501)
    assert result.outputs["y"].shape == (1, 4)
    await batcher.close()


async def test_a_request_whose_deadline_passed_in_the_queue_is_shed_at_dispatch(
    affine_model: OnnxModel,
) -> None:
    gated = Gated(affine_model)
    clock = Clock()
    latency = LatencyModel(prior_a=0.0, prior_b=0.001)
    batcher = make(gated, clock=clock, latency=latency)
    blocker = asyncio.create_task(batcher.submit({"x": rows_of(0, 1)}, 1, clock.now + 30))
    await until(lambda: len(gated.seen) == 1)
    short = asyncio.create_task(batcher.submit({"x": rows_of(1, 1)}, 1, clock.now + 0.02))
    await until(lambda: batcher.queued_rows == 1)
    clock.now += 0.05  # the blocker took longer than the short request's deadline
    gated.gate.set()
    await blocker
    with pytest.raises(Overloaded) as shed:
        await short
    assert shed.value.reason == "deadline"
    assert len(gated.seen) == 1
    await batcher.close()


# --- failure isolation and output checks --------------------------------------------------------


async def test_a_poison_row_fails_alone_and_its_31_batchmates_succeed(
    load_model: Callable[..., OnnxModel],
) -> None:
    model = load_model("gather")
    gated = Gated(model)
    recorder = Recorder()
    batcher = make(gated, observer=recorder)
    blocker = asyncio.create_task(batcher.submit({"x": rows_of(0, 1), "idx": np.array([0])}, 1, far()))
    await until(lambda: len(gated.seen) == 1)
    calls = []
    for i in range(32):
        idx = np.array([99 if i == 13 else i % 8], dtype=np.int64)
        calls.append(asyncio.create_task(batcher.submit({"x": rows_of(i, 1), "idx": idx}, 1, far())))
    await until(lambda: batcher.queued_rows == 32)
    gated.gate.set()
    await blocker
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    table = np.arange(32, dtype=np.float32).reshape(8, 4)
    for i, outcome in enumerate(outcomes):
        if i == 13:
            assert isinstance(outcome, ModelFailed)
            assert "indices" in str(outcome.__cause__).lower() or "out of bounds" in str(outcome.__cause__)
        else:
            assert not isinstance(outcome, BaseException), outcome
            np.testing.assert_array_equal(outcome.outputs["y"], table[[i % 8]] + rows_of(i, 1))
    assert len(gated.seen[1]["x"]) == 32
    failed_runs = [rows for rows, ok in recorder.batches if not ok]
    assert failed_runs[0] == 32
    assert failed_runs[-1] == 1
    assert len(gated.seen) - 2 <= 2 * 5  # one poison row: two runs per halving
    await batcher.close()


async def test_a_batch_of_poison_rows_costs_at_most_2n_minus_1_runs(
    load_model: Callable[..., OnnxModel],
) -> None:
    model = load_model("gather")
    gated = Gated(model)
    batcher = make(gated)
    blocker = asyncio.create_task(batcher.submit({"x": rows_of(0, 1), "idx": np.array([0])}, 1, far()))
    await until(lambda: len(gated.seen) == 1)
    bad = [
        asyncio.create_task(batcher.submit({"x": rows_of(i, 1), "idx": np.array([50])}, 1, far())) for i in range(32)
    ]
    await until(lambda: batcher.queued_rows == 32)
    gated.gate.set()
    await blocker
    outcomes = await asyncio.gather(*bad, return_exceptions=True)
    assert all(isinstance(o, ModelFailed) for o in outcomes)
    assert len(gated.seen) - 1 == 2 * 32 - 1
    await batcher.close()


async def test_outputs_with_the_wrong_row_count_fail_every_caller(
    load_model: Callable[..., OnnxModel],
) -> None:
    model = load_model("drop_row")
    batcher = make(model.run_async)
    with pytest.raises(InvalidOutput, match="expected 3 rows"):
        await batcher.submit({"x": rows_of(0, 3)}, 3, far())
    await batcher.close()


async def test_rows_with_different_shapes_are_never_merged(load_model: Callable[..., OnnxModel]) -> None:
    model = load_model("ragged")
    gated = Gated(model)
    batcher = make(gated)
    blocker = asyncio.create_task(batcher.submit({"x": np.ones((1, 2), np.float32)}, 1, far()))
    await until(lambda: len(gated.seen) == 1)
    widths = [3, 5, 3, 5, 3]
    calls = [
        asyncio.create_task(batcher.submit({"x": np.full((1, w), i, np.float32)}, 1, far()))
        for i, w in enumerate(widths)
    ]
    await until(lambda: batcher.queued_rows == 5)
    gated.gate.set()
    await blocker
    results = await asyncio.gather(*calls)
    for i, (w, result) in enumerate(zip(widths, results, strict=True)):
        np.testing.assert_array_equal(result.outputs["y"], np.full((1, w), -i, np.float32))
    assert [b["x"].shape for b in gated.seen[1:]] == [(3, 3), (2, 5)]
    await batcher.close()


def test_bad_arguments_are_refused_with_the_value_in_the_message(affine_model: OnnxModel) -> None:
    with pytest.raises(ValueError, match="max_batch_size must be an integer >= 1, got 0"):
        make(affine_model.run_async, max_batch_size=0)
    with pytest.raises(ValueError, match="max_queue_rows must be an integer >= 64, got 10"):
        make(affine_model.run_async, max_queue_rows=10)
    with pytest.raises(ValueError, match="max_wait_s must be >= 0, got -1"):
        make(affine_model.run_async, max_wait_s=-1)


# --- idle -------------------------------------------------------------------------------------


async def test_an_idle_batcher_uses_no_cpu(affine_model: OnnxModel) -> None:
    batcher = make(affine_model.run_async)
    await batcher.submit({"x": rows_of(0, 1)}, 1, far())
    cpu_before = time.process_time()
    await asyncio.sleep(0.5)
    cpu_used = time.process_time() - cpu_before
    assert cpu_used < 0.02, f"idle batcher used {cpu_used * 1000:.1f} ms of CPU in 0.5 s"
    await batcher.close()

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from runtime import (
    FaultInjector,
    InternalError,
    OnnxModel,
    Outcome,
    Pipeline,
    RequestRecord,
    RuleStage,
    RuntimeMetrics,
    Settings,
    TensorSchema,
    ValidationFailed,
)


class Calls:
    def __init__(self) -> None:
        self.seen: list[tuple[Outcome, RequestRecord]] = []

    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        self.seen.append((outcome, record))


class Exploding:
    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        raise RuntimeError("hook bug")


@pytest.fixture
async def built(
    load_model: Callable[..., OnnxModel], metrics: RuntimeMetrics
) -> AsyncIterator[tuple[Pipeline, Calls, OnnxModel]]:
    primary = load_model("affine", name="primary", version="3")
    fallback = load_model("affine_b", name="fallback", version="1")
    calls = Calls()
    pipeline = Pipeline.build(
        "test",
        models=[primary, fallback],
        schema=TensorSchema(primary.signature, max_rows=16),
        fallback_rules=RuleStage("rules", "r1", lambda r: {"y": np.zeros((r.rows, 4), np.float32)}),
        settings=Settings(max_batch_size=16, max_queue_rows=512, warmup_runs=1),
        hooks=[Exploding(), calls],
        metrics=metrics,
    )
    await pipeline.start()
    yield pipeline, calls, primary
    await pipeline.close()


async def test_start_warms_up_and_reports_ready(built: tuple[Pipeline, Calls, OnnxModel]) -> None:
    pipeline, _, primary = built
    assert pipeline.ready
    assert pipeline.chain.primary.batcher.latency.observations == 2  # batch sizes 1 and 16
    assert primary.compute.observations >= 2


async def test_a_prediction_carries_its_provenance_and_the_hook_its_record(
    built: tuple[Pipeline, Calls, OnnxModel],
) -> None:
    pipeline, calls, _ = built
    prediction = await pipeline.predict({"x": [[1, 2, 3, 4]]}, request_id="abc")
    np.testing.assert_array_equal(prediction.outputs["y"], [[3, 5, 7, 9]])
    assert (prediction.request_id, prediction.served_by, prediction.degraded) == ("abc", "primary", False)
    assert prediction.model_version == "3"
    [(outcome, record)] = calls.seen
    assert outcome is Outcome.SUCCESS
    assert record.request_id == "abc"
    assert record.rows == 1
    assert record.batch_rows == 1
    assert 0 < record.validation_s < record.total_s
    assert 0 < record.inference_s < record.total_s
    assert record.input_hash is not None
    assert len(record.input_hash) == 16


async def test_the_input_hash_depends_on_the_input(built: tuple[Pipeline, Calls, OnnxModel]) -> None:
    pipeline, calls, _ = built
    for x in ([[1, 2, 3, 4]], [[1, 2, 3, 4]], [[1, 2, 3, 5]]):
        await pipeline.predict({"x": x})
    hashes = [record.input_hash for _, record in calls.seen]
    assert hashes[0] == hashes[1] != hashes[2]


async def test_a_raising_hook_never_fails_the_request(
    built: tuple[Pipeline, Calls, OnnxModel], metrics: RuntimeMetrics
) -> None:
    pipeline, calls, _ = built
    await pipeline.predict({"x": [[0, 0, 0, 0]]})
    assert len(calls.seen) == 1  # the hook after the broken one still ran
    assert metrics.hook_errors.labels("Exploding")._value.get() == 1


async def test_bad_input_is_rejected_before_any_model_runs(built: tuple[Pipeline, Calls, OnnxModel]) -> None:
    pipeline, calls, primary = built
    runs = primary.compute.observations
    with pytest.raises(ValidationFailed) as error:
        await pipeline.predict({"x": [[1, 2, float("nan"), 4]], "z": 1})
    # a schema violation stops validation before the content layer: the NaN is not reported yet
    assert [(e.path, e.rule) for e in error.value.errors] == [("z", "unknown_field")]
    assert error.value.layer == "schema"
    with pytest.raises(ValidationFailed) as error:
        await pipeline.predict({"x": [[1, 2, float("nan"), 4]]})
    assert [(e.path, e.rule) for e in error.value.errors] == [("x[0][2]", "finite")]
    assert error.value.layer == "content"
    assert primary.compute.observations == runs
    assert len(calls.seen) == 2
    outcome, record = calls.seen[-1]
    assert outcome is Outcome.REJECTED
    assert record.error_type == "validation_error"
    assert record.failed_rules


async def test_a_failing_primary_gives_a_fallback_outcome(built: tuple[Pipeline, Calls, OnnxModel]) -> None:
    pipeline, calls, primary = built
    primary.faults = FaultInjector(error_rate=1.0)
    prediction = await pipeline.predict({"x": [[1, 1, 1, 1]]})
    assert prediction.served_by == "fallback"
    assert prediction.degraded
    assert calls.seen[-1][0] is Outcome.FALLBACK


async def test_a_broken_rules_function_is_an_internal_error_with_no_details(
    load_model: Callable[..., OnnxModel], metrics: RuntimeMetrics
) -> None:
    primary = load_model("affine", name="primary")
    primary.faults = FaultInjector(error_rate=1.0)

    def broken(_: Any) -> dict[str, np.ndarray]:
        raise KeyError("secret_column")

    calls = Calls()
    pipeline = Pipeline.build(
        "t",
        models=[primary],
        schema=TensorSchema(primary.signature, max_rows=4),
        fallback_rules=RuleStage("rules", "1", broken),
        hooks=[calls],
        settings=Settings(warmup_runs=0),
        metrics=metrics,
    )
    with pytest.raises(InternalError) as error:
        await pipeline.predict({"x": [[1, 1, 1, 1]]})
    assert "secret_column" not in str(error.value.public_body())
    assert calls.seen[-1][0] is Outcome.ERROR
    await pipeline.close()


async def test_exactly_one_hook_call_per_request_under_load_and_cancellation(
    built: tuple[Pipeline, Calls, OnnxModel],
) -> None:
    pipeline, calls, _ = built
    tasks = [asyncio.create_task(pipeline.predict({"x": [[i, 0, 0, 0]]}, request_id=str(i))) for i in range(200)]
    bad = [asyncio.create_task(pipeline.predict({"x": [[1]]}, request_id=f"bad{i}")) for i in range(20)]
    await asyncio.sleep(0)
    for task in tasks[::7]:
        task.cancel()
    await asyncio.gather(*tasks, *bad, return_exceptions=True)
    ids = [record.request_id for _, record in calls.seen]
    assert len(ids) == len(set(ids)) == 220
    outcomes = {record.request_id: outcome for outcome, record in calls.seen}
    assert [outcomes[str(i)] for i in range(0, 200, 7)] == [Outcome.CANCELLED] * 29
    assert all(outcomes[f"bad{i}"] is Outcome.REJECTED for i in range(20))


# --- start-up checks -----------------------------------------------------------------------------


def rules_answering(dtype: str, width: int = 4) -> RuleStage:
    return RuleStage("rules", "1", lambda r: {"y": np.zeros((r.rows, width), dtype)})


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        (rules_answering("float64"), r"stage 'rules' answers y: float64\[1, 4\] where 'primary' answers y: float32"),
        (rules_answering("float32", width=3), r"stage 'rules' answers y: float32\[1, 3\]"),
    ],
)
async def test_a_rule_stage_that_does_not_answer_like_the_models_stops_start_up(
    load_model: Callable[..., OnnxModel], metrics: RuntimeMetrics, rules: RuleStage, problem: str
) -> None:
    primary = load_model("affine", name="primary")
    pipeline = Pipeline.build(
        "checked",
        models=[primary],
        schema=TensorSchema(primary.signature, max_rows=4),
        fallback_rules=rules,
        examples=[{"x": [[1, 2, 3, 4]]}],
        settings=Settings(warmup_runs=1),
        metrics=metrics,
    )
    with pytest.raises(TypeError, match=problem):
        await pipeline.start()
    assert not pipeline.ready
    await pipeline.close()


async def test_a_declared_example_that_is_not_valid_stops_start_up(
    load_model: Callable[..., OnnxModel], metrics: RuntimeMetrics
) -> None:
    primary = load_model("affine", name="primary")
    pipeline = Pipeline.build(
        "checked",
        models=[primary],
        schema=TensorSchema(primary.signature, max_rows=4),
        examples=[{"x": [[1, 2, 3]]}],
        settings=Settings(warmup_runs=1),
        metrics=metrics,
    )
    with pytest.raises(ValueError, match=r"a declared example is not valid: .*x: expected float32\[N, 4\]"):
        await pipeline.start()
    await pipeline.close()


async def test_the_examples_answers_are_kept_for_the_documents(built: tuple[Pipeline, Calls, OnnxModel]) -> None:
    pipeline, calls, _ = built
    assert pipeline.example_outputs == []  # none declared
    pipeline.examples = ({"x": [[1, 1, 1, 1]]},)
    await pipeline.start()
    np.testing.assert_array_equal(pipeline.example_outputs[0]["y"], [[3, 3, 3, 3]])
    assert calls.seen == []  # checking examples is not serving requests: no hook, no metric


async def test_a_stage_with_small_batches_computes_a_larger_request_in_parts(
    load_model: Callable[..., OnnxModel], metrics: RuntimeMetrics
) -> None:
    primary = load_model("affine", name="primary")
    settings = Settings(warmup_runs=1, max_request_rows=10)
    pipeline = Pipeline.build(
        "parts",
        models=[primary],
        stages=[settings.stage("primary", {"max_batch_size": 3})],
        schema=TensorSchema(primary.signature, max_rows=10),
        settings=settings,
        metrics=metrics,
    )
    await pipeline.start()
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    prediction = await pipeline.predict({"x": x})
    np.testing.assert_array_equal(prediction.outputs["y"], x * 2 + 1)
    await pipeline.close()
    sizes = {
        s.labels["le"]: s.value for s in next(iter(metrics.batch_size.collect())).samples if s.name.endswith("_bucket")
    }
    assert sizes["4.0"] - sizes["2.0"] == 3  # batches of 3, 3, 3 (and the warm-up's) ...
    assert sizes["1.0"] >= 1  # ... and 1


async def test_what_was_made_for_the_pipeline_is_closed_after_its_requests_drain(
    load_model: Callable[..., OnnxModel], metrics: RuntimeMetrics
) -> None:
    model = load_model("affine", name="primary", version="1")
    events: list[str] = []

    class Owned:
        def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
            events.append("request")

        def close(self) -> None:
            events.append("closed")

    owned = Owned()
    pipeline = Pipeline.build(
        "test",
        models=[model],
        schema=TensorSchema(model.signature, max_rows=16),
        settings=Settings(warmup_runs=0),
        hooks=[owned],
        closing=[owned],
        metrics=metrics,
    )
    await pipeline.start()
    answer = asyncio.create_task(pipeline.predict({"x": np.ones((1, 4), np.float32)}))
    await asyncio.sleep(0)
    await pipeline.close()
    await answer
    assert events == ["request", "closed"]

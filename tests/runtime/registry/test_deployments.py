"""The registry: versions are deployed, promoted and retired while requests keep being answered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from runtime import OnnxModel, Pipeline, Registry, RuntimeMetrics, Settings, TensorSchema


@pytest.fixture
def registry(load_model: Callable[..., OnnxModel], metrics: RuntimeMetrics) -> Registry:
    """Versions "1" (y = 2x + 1) and "2" (y = 3x) of one model, and "3", a model of other inputs and
    outputs; anything else is unknown."""
    files = {"1": "affine", "2": "affine_b", "3": "classifier"}

    def load(version: str) -> Pipeline:
        if version == "latest":
            version = "2"
        if version not in files:
            raise LookupError(f"no version {version!r}")
        model = load_model(files[version], name="m", version=version)
        return Pipeline.build(
            "m",
            models=[model],
            schema=TensorSchema(model.signature, max_rows=4),
            settings=Settings(warmup_runs=1),
            metrics=metrics,
        )

    return Registry("m", load, lambda: ["2", "1"], default="1")


X = {"x": [[1, 1, 1, 1]]}


async def test_nothing_answers_before_a_version_is_promoted(registry: Registry) -> None:
    assert not registry.ready
    with pytest.raises(LookupError, match="nothing is deployed"):
        _ = registry.production
    assert registry.versions() == ["2", "1"]


async def test_promote_loads_the_default_version_and_pick_answers_with_it(registry: Registry) -> None:
    deployment = await registry.promote()
    assert deployment.version == "1"
    assert registry.ready
    prediction = await registry.pick().predict(X)
    np.testing.assert_array_equal(prediction.outputs["y"], [[3, 3, 3, 3]])
    assert registry.state()["aliases"] == {"production": "1"}
    await registry.close()


async def test_promoting_another_version_retires_the_old_one_after_its_requests_finish(registry: Registry) -> None:
    await registry.promote("1")
    old = registry.pick()
    in_flight = [asyncio.create_task(old.predict(X)) for _ in range(20)]
    await registry.promote("latest")
    assert registry.production.version == "2"
    answers = await asyncio.gather(*in_flight)  # admitted by version 1: answered by version 1
    assert {a.model_version for a in answers} == {"1"}
    assert not old.ready
    prediction = await registry.pick().predict(X)
    assert prediction.model_version == "2"
    np.testing.assert_array_equal(prediction.outputs["y"], [[3, 3, 3, 3]])
    assert [d["version"] for d in registry.state()["deployments"]] == ["2"]
    await registry.close()
    assert not registry.ready


async def test_reloading_the_same_version_gives_a_fresh_deployment(registry: Registry) -> None:
    first = await registry.promote("1")
    first.pipeline.chain.primary.breaker._open()  # as after failures
    second = await registry.promote("1")
    assert second.pipeline is not first.pipeline
    assert second.pipeline.chain.primary.breaker.state.name == "CLOSED"
    assert not first.pipeline.ready
    await registry.close()


async def test_an_unknown_version_changes_nothing(registry: Registry) -> None:
    await registry.promote("1")
    with pytest.raises(LookupError, match="no version '7'"):
        await registry.promote("7")
    assert registry.production.version == "1"
    assert registry.ready
    await registry.close()


async def test_a_version_that_does_not_take_and_give_what_production_does_is_refused(registry: Registry) -> None:
    from runtime import SignatureMismatch

    await registry.promote("1")
    with pytest.raises(
        SignatureMismatch, match=r"its inputs are float32\[N, 3\] x; production's are float32\[N, 4\] x"
    ):
        await registry.promote("3")
    assert registry.production.version == "1"
    assert registry.ready
    await registry.close()


async def test_a_replaced_version_can_be_kept_warm_and_restored_at_once(registry: Registry) -> None:
    first = await registry.promote("1")
    second = await registry.promote("2", keep_previous=True)
    assert registry.previous is first
    assert first.pipeline.ready  # warm: a rollback needs no load
    assert registry.state()["aliases"] == {"production": "2", "previous": "1"}
    restored = await registry.restore()
    assert restored is first
    assert registry.production is first
    assert registry.previous is None
    assert not second.pipeline.ready  # the version rolled back from is closed
    with pytest.raises(LookupError, match="no previous version"):
        await registry.restore()
    await registry.close()

"""The audit hook on a real pipeline: a row per answered request with the route, the stage that
answered and a keyed digest of the input; none for a refused request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from runtime import FaultInjector, OnnxModel, Pipeline, RuleStage, Settings, TensorSchema, ValidationFailed
from runtime.audit import AuditHook, AuditStore, AuditWriter, keyed_digest

KEY = b"an-audit-key-for-the-unit-test"


async def test_each_answer_makes_one_row(load_model: Callable[..., OnnxModel], tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.sqlite")
    writer = AuditWriter(store, flush_s=0.01)
    primary = load_model("affine", name="primary")
    pipeline = Pipeline.build(
        "p",
        models=[primary],
        schema=TensorSchema(primary.signature, max_rows=4),
        fallback_rules=RuleStage("rules", "1", lambda r: {"y": np.zeros((r.rows, 4), np.float32)}),
        settings=Settings(warmup_runs=1),
        hooks=[AuditHook(writer, KEY, clock=lambda: 1_700_000_000.0)],
    )
    await pipeline.start()
    await pipeline.predict({"x": [[1, 2, 3, 4]]}, request_id="a1", route="canary")
    primary.faults = FaultInjector(error_rate=1.0)
    await pipeline.predict({"x": [[5, 6, 7, 8]]}, request_id="a2")
    with pytest.raises(ValidationFailed):
        await pipeline.predict({"x": [[1, 2]]}, request_id="a3")
    await pipeline.close()
    writer.close()
    first, second = store.query()
    assert (first["request_id"], first["route"], first["model"], first["degraded"]) == (
        "a1",
        "canary",
        "primary",
        False,
    )
    assert first["outputs"] == {"y": [[3.0, 5.0, 7.0, 9.0]]}
    assert first["input_hmac"] == keyed_digest({"x": np.array([[1, 2, 3, 4]], np.float32)}, KEY)
    assert (second["request_id"], second["model"], second["degraded"]) == ("a2", "rules", True)
    assert second["factors"]["fallbacks"][0][:2] == ["primary", "rules"]
    assert store.count() == 2  # the refused request made none
    assert store.verify() == []

"""The audit hook on a real pipeline: a row per answered request with the route, the stage that
answered and a keyed digest of the input; none for a refused request."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime import FaultInjector, OnnxModel, Pipeline, RuleStage, Settings, TensorSchema, ValidationFailed
from runtime.audit import AuditHook, AuditStore, AuditWriter, keyed_digest
from runtime.audit.hook import ShadowRun, sampled
from runtime.audit.rows import Item
from runtime.audit.sink import StoreSink, encode
from runtime.core.record import RequestRecord

KEY = b"an-audit-key-for-the-unit-test"


class Framed(StoreSink):
    """Rows made and stored here, each batch also framed as for a writer process (kept)."""

    def __init__(self, store: AuditStore) -> None:
        super().__init__(store, KEY)
        self.frames: list[bytes] = []

    def append(self, items: Sequence[Item], unsure: bool = False) -> int:
        self.frames.append(encode(unsure, items))
        return super().append(items, unsure)


async def test_each_answer_makes_one_row(load_model: Callable[..., OnnxModel], tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.sqlite")
    sink = Framed(store)
    writer = AuditWriter(store, sink=sink, flush_s=0.01)
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
    assert sink.frames
    assert all(frame[:1] == b"m" for frame in sink.frames)  # plain values: marshalled, not pickled


async def test_a_row_says_who_asked_which_file_answered_and_what_the_service_makes_of_it(
    load_model: Callable[..., OnnxModel], tmp_path: Path
) -> None:
    store = AuditStore(tmp_path / "audit.sqlite")
    sink = Framed(store)
    writer = AuditWriter(store, sink=sink, flush_s=0.01)
    primary = load_model("affine", name="primary")
    described = []

    def describe(record: RequestRecord) -> dict[str, Any]:
        described.append(threading.current_thread().name)
        assert record.outputs is not None
        return {"answers": [{"big": bool(v > 5)} for v in record.outputs["y"][:, 0]]}

    hook = AuditHook(writer, KEY, describe=describe, payload_share=1.0)
    pipeline = Pipeline.build(
        "p",
        models=[primary],
        schema=TensorSchema(primary.signature, max_rows=4),
        settings=Settings(warmup_runs=1),
        hooks=[hook],
    )
    await pipeline.start()
    await pipeline.predict({"x": [[1, 2, 3, 4], [9, 9, 9, 9]]}, request_id="b1", principal="checkout")
    await pipeline.close()
    writer.close()
    [found] = store.query()
    assert (found["principal"], found["artifact"]) == ("checkout", primary.sha256)
    assert found["answers"] == [{"big": False}, {"big": True}]
    assert described == ["MainThread"]  # on the request path: what leaves it is a finished row
    [payload] = store.payloads("b1")
    assert payload["inputs"] == {"x": [[1.0, 2.0, 3.0, 4.0], [9.0, 9.0, 9.0, 9.0]]}
    assert payload["outputs"]["y"][1] == [19.0] * 4
    assert [frame[:1] for frame in sink.frames] == [b"m"]  # the row and its payload, marshalled


def test_payloads_are_sampled_by_request_id() -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    share = sum(sampled(i, 0.1) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    # a larger share keeps every id a smaller one kept (the decision is the id's, not a coin's)
    assert {i for i in ids if sampled(i, 0.1)} <= {i for i in ids if sampled(i, 0.2)}
    assert not any(sampled(i, 0.0) for i in ids)
    assert all(sampled(i, 1.0) for i in ids)


def test_a_shadow_run_leaves_a_row_marked_as_such(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.sqlite")
    writer = AuditWriter(store, key=KEY, flush_s=0.01)
    hook = AuditHook(writer, KEY, clock=lambda: 1_700_000_000.0)
    x = {"x": np.ones((1, 4), np.float32)}
    hook.on_shadow(
        ShadowRun("s1", "svc", "cand", "v2", "f" * 64, x, {"probabilities": np.array([[0.2, 0.8]])}, False, 0.3, 0.002)
    )
    hook.on_shadow(ShadowRun("s2", "svc", "cand", "v2", "f" * 64, x, None, False, 0.0, 0.001))
    writer.close()
    first, second = store.query(kind="shadow")
    assert (first["route"], first["request_id"], first["version"], first["agreed"]) == ("shadow", "s1", "v2", False)
    assert first["confidence"] == [0.8]
    assert first["input_hmac"] == keyed_digest(x, KEY)
    assert (second["failed"], second["outputs"]) == (True, None)
    assert store.verify() == []


async def test_a_description_that_fails_costs_the_row_counted_not_the_answer(
    load_model: Callable[..., OnnxModel], tmp_path: Path
) -> None:
    store = AuditStore(tmp_path / "audit.sqlite")
    writer = AuditWriter(store, key=KEY, flush_s=0.01)
    primary = load_model("affine", name="primary")

    def describe(record: RequestRecord) -> dict[str, Any]:
        raise KeyError("a bug in a description")

    pipeline = Pipeline.build(
        "p",
        models=[primary],
        schema=TensorSchema(primary.signature, max_rows=4),
        settings=Settings(warmup_runs=1),
        hooks=[AuditHook(writer, KEY, describe=describe)],
    )
    await pipeline.start()
    answered = await pipeline.predict({"x": [[1, 2, 3, 4]]}, request_id="c1")
    await pipeline.close()
    writer.close()
    assert answered.outputs["y"].tolist() == [[3.0, 5.0, 7.0, 9.0]]
    assert store.count() == 0
    assert writer.dropped == {"build_failed": 1}

"""The audit trail's writer process: what the request path left reaches the store through it, made
into rows (the input's HMAC under the key it was sent), in order and chained; a process that dies is
replaced and no row is lost or written twice; a failing disk is reported back, with nothing of the
batch stored, so that the worker retries."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from enum import StrEnum
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.audit import AuditStore, AuditWriter, keyed_digest
from runtime.audit.chain import message_of, pack
from runtime.audit.rows import Answered, Shadowed
from runtime.audit.sink import OK, ProcessSink, SinkFailed, decode, encode, serve
from runtime.audit.store import Line
from tests.runtime.audit.test_writer import until

KEY = b"an-audit-key-for-the-unit-test"


class Route(StrEnum):
    CANARY = "canary"


def inputs(i: int) -> dict[str, np.ndarray]:
    return {"x": np.array([[i, 1.0, 2.0]], np.float32)}


def answered(i: int) -> Answered:
    outputs = {"probabilities": np.array([[0.25, 0.75]], np.float32)}
    facts = b'{"answers":[{"decision":"approve"}]}'
    return Answered(
        1000.0 + i, f"r{i}", "checkout", "svc", "v1", "m", "v1", "f" * 64, "production", False, 1, False, None,
        0.002, message_of(inputs(i)), pack(outputs), facts,
    )  # fmt: skip


def test_rows_are_made_in_a_process_of_their_own_and_it_ends_with_the_sink(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    store = AuditStore(path)
    sink = ProcessSink(path, KEY)
    writer = AuditWriter(store, sink=sink, batch_rows=50, flush_s=0.01)
    for i in range(300):
        assert writer.offer(answered(i))
        if i % 3 == 0:
            assert writer.offer({"kind": "payload", "request_id": f"r{i}", "at": 1000.0 + i})
    until(lambda: writer.held == 0, 20.0)
    pid = sink.pid
    assert pid is not None
    assert pid != os.getpid()
    writer.close()
    assert sink.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, and reaped
    assert (writer.written, writer.dropped, store.count(), len(store.payloads(limit=1000))) == (300, {}, 300, 100)
    first = store.query(limit=1)[0]
    assert (first["request_id"], first["principal"], first["answers"]) == ("r0", "checkout", [{"decision": "approve"}])
    assert first["input_hmac"] == keyed_digest(inputs(0), KEY)
    assert (first["outputs"], first["confidence"]) == ({"probabilities": [[0.25, 0.75]]}, [0.75])
    assert store.verify() == []


def test_a_killed_process_is_replaced_and_no_row_is_lost_or_doubled(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    store = AuditStore(path)
    sink = ProcessSink(path, KEY)
    writer = AuditWriter(store, sink=sink, batch_rows=20, flush_s=0.005, retry_max_s=0.05)
    offered = 0
    for _ in range(3):
        for _row in range(200):
            offered += writer.offer(answered(offered))
            time.sleep(0.0002)
        until(lambda: sink.pid is not None, 20.0)
        os.kill(sink.pid, signal.SIGKILL)  # type: ignore[arg-type]
    until(lambda: writer.held == 0, 20.0)
    writer.close()
    assert sink.starts >= 4
    assert writer.dropped == {}
    assert writer.written == store.count() == offered == 600
    assert len({r["request_id"] for r in store.query(limit=1000)}) == 600  # none twice
    assert store.verify() == []


class Failing(AuditStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.broken = True

    def append(self, rows: Sequence[Line | Mapping[str, Any]]) -> int:
        if self.broken:
            raise OSError(28, "No space left on device")
        return super().append(rows)


def test_the_process_answers_each_batch_says_why_one_failed_and_skips_one_it_holds(tmp_path: Path) -> None:
    store = Failing(tmp_path / "audit.sqlite")
    inbox, to_inbox = Pipe(duplex=False)
    from_outbox, outbox = Pipe(duplex=False)
    server = threading.Thread(target=serve, args=(inbox, outbox, store))
    server.start()
    to_inbox.send_bytes(KEY)
    assert from_outbox.recv_bytes() == OK  # ready

    def send(unsure: bool, batch: list[Any]) -> Any:
        to_inbox.send_bytes(encode(unsure, batch))
        return pickle.loads(from_outbox.recv_bytes())  # the answer: a count or an error

    batch = [answered(1), {"kind": "payload", "request_id": "r1", "at": 1001.0}, answered(2)]
    assert send(False, batch) == "OSError: [Errno 28] No space left on device"
    assert store.count() == 0  # nothing of the batch
    store.broken = False
    assert send(False, batch) == 0
    assert send(True, batch) == 0  # sent again after a death: already held, skipped
    assert send(True, [answered(3), "not an item"]) == 1  # unsure, but not held: written; one bad item
    to_inbox.close()
    server.join(5)
    assert not server.is_alive()  # ends at the pipe's end
    assert [r["request_id"] for r in store.query()] == ["r1", "r2", "r3"]
    assert len(store.payloads()) == 1
    assert store.verify() == []


def test_a_closed_sink_refuses_to_append(tmp_path: Path) -> None:
    sink = ProcessSink(tmp_path / "audit.sqlite", KEY)
    assert sink.append([answered(1)]) == 0
    sink.close()
    with pytest.raises(SinkFailed, match="closed"):
        sink.append([answered(2)])
    assert AuditStore(tmp_path / "audit.sqlite").count() == 1


def test_a_batch_crosses_the_pipe_marshalled_or_else_pickled() -> None:
    shadowed = Shadowed(1000.5, "r1", "svc", "m", "v2", None, message_of(inputs(1)), None, True, 0.0, 0.001)
    batch: list[Any] = [answered(1), shadowed, {"kind": "payload", "request_id": "r1", "at": 1000.0}]
    frame = encode(True, batch)
    assert frame[:1] == b"m"
    assert decode(frame) == (True, batch)
    assert [type(item) for item in decode(frame)[1]] == [Answered, Shadowed, dict]
    rows = [{"kind": "payload", "request_id": "r2", "at": 1001.0, "route": Route.CANARY}]
    frame = encode(False, rows)
    assert frame[:1] == b"p"  # marshal writes no enum: pickled
    assert decode(frame) == (False, rows)

"""The audit writer: every row offered is written or counted as dropped, by reason; the queue stays
bounded while the disk fails, and writing resumes when it recovers; fail-closed refuses instead."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime.audit import AuditStore, AuditWriter, Overflow
from runtime.audit.store import Line


def row(i: int) -> dict[str, Any]:
    return {"request_id": f"r{i}", "at": 1000.0 + i, "version": "v1", "route": "production"}


class Failing(AuditStore):
    """A store whose disk fails (raises) until it is told to recover; ``slow`` stalls each write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.broken = threading.Event()
        self.slow_s = 0.0

    def append(self, rows: Sequence[Line | Mapping[str, Any]]) -> int:
        time.sleep(self.slow_s)
        if self.broken.is_set():
            raise OSError(28, "No space left on device")
        return super().append(rows)


def until(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_every_row_offered_is_written_in_batches(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.sqlite")
    writer = AuditWriter(store, max_queue=1000, batch_rows=50, flush_s=0.01)
    assert all(writer.offer(row(i)) for i in range(500))
    writer.close()
    assert (writer.written, writer.dropped, store.count()) == (500, {}, 500)
    assert store.verify() == []


class Batches:
    """A sink that records the size of each batch it is given."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def append(self, items: Sequence[Any], unsure: bool = False) -> int:
        self.sizes.append(len(items))
        return 0

    def close(self) -> None:
        pass


def test_batches_go_full_and_a_short_one_only_once_its_oldest_row_waited_flush_s(tmp_path: Path) -> None:
    sink = Batches()
    writer = AuditWriter(AuditStore(tmp_path / "audit.sqlite"), sink=sink, batch_rows=10, flush_s=0.5)
    time.sleep(0.6)  # the thread's first wait is over: the next short batch waits a full flush_s
    started = time.monotonic()
    for i in range(25):
        writer.offer(row(i))
    until(lambda: writer.written == 20)
    assert sink.sizes == [10, 10]  # at once: full batches do not wait
    until(lambda: writer.written == 25)
    assert sink.sizes == [10, 10, 5]
    assert time.monotonic() - started >= 0.45  # the short one waited (about) flush_s
    writer.close()


def test_an_item_that_cannot_be_made_into_a_row_is_counted_and_the_rest_written(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.sqlite")
    writer = AuditWriter(store, key=b"an-audit-key-for-the-unit-test", flush_s=0.01)
    for i in range(10):
        item: Any = "not an item" if i == 3 else row(i)
        writer.offer(item)
    writer.close()
    assert (writer.written, writer.dropped, store.count()) == (9, {"build_failed": 1}, 9)
    assert store.verify() == []


def test_a_failing_disk_keeps_the_queue_bounded_counts_drops_and_writing_resumes(tmp_path: Path) -> None:
    store = Failing(tmp_path / "audit.sqlite")
    store.broken.set()
    writer = AuditWriter(store, max_queue=100, batch_rows=10, flush_s=0.01, retry_max_s=0.05)
    accepted = sum(writer.offer(row(i)) for i in range(1000))
    assert accepted <= 100 + 10  # the queue, and a batch being retried
    assert writer.held <= 100
    assert writer.dropped["queue_full"] == 1000 - accepted
    until(lambda: writer.write_errors >= 2)
    store.broken.clear()  # the disk recovers
    until(lambda: writer.held == 0)
    assert writer.offer(row(5000))
    writer.close()
    assert writer.written == accepted + 1
    assert writer.written + sum(writer.dropped.values()) == 1001  # nothing lost silently
    assert store.verify() == []


def test_fail_closed_says_when_to_refuse_and_still_bounds_what_it_holds(tmp_path: Path) -> None:
    store = Failing(tmp_path / "audit.sqlite")
    store.slow_s = 0.2
    writer = AuditWriter(store, max_queue=5, batch_rows=5, flush_s=0.01, overflow=Overflow.FAIL_CLOSED)
    taken = [writer.offer(row(i)) for i in range(20)]
    assert not writer.accepting  # the service answers 503 now
    assert 10 <= sum(taken) <= 15  # requests already admitted still leave their rows, up to 2x the queue
    assert writer.dropped["queue_full"] == 20 - sum(taken)  # beyond that: dropped, counted
    until(lambda: writer.accepting)
    assert writer.offer(row(99))
    writer.close()
    assert writer.written == sum(taken) + 1


def test_close_flushes_within_its_deadline_and_counts_what_it_could_not(tmp_path: Path) -> None:
    store = Failing(tmp_path / "audit.sqlite")
    store.broken.set()
    writer = AuditWriter(store, max_queue=100, batch_rows=10, flush_s=0.01, retry_max_s=0.05)
    for i in range(30):
        writer.offer(row(i))
    writer.close(timeout_s=0.5)
    assert writer.written + sum(writer.dropped.values()) == 30
    assert set(writer.dropped) <= {"shutdown", "write_failed"}
    assert not writer.offer(row(100))
    assert writer.dropped["shutdown"] >= 1


def test_payloads_are_shed_first_and_counted(tmp_path: Path) -> None:
    store = Failing(tmp_path / "audit.sqlite")
    store.broken.set()  # nothing leaves the queue
    writer = AuditWriter(store, max_queue=10, flush_s=0.01, retry_max_s=0.02)
    room = []
    for i in range(10):
        room.append(writer.room_for_payloads)
        assert writer.offer(row(i))
    assert room == [True] * 5 + [False] * 5  # no payload past half the queue
    writer.count_dropped("payload_shed")
    assert writer.offer(row(99)) is False  # the metadata had the queue to the full
    assert writer.dropped == {"payload_shed": 1, "queue_full": 1}
    store.broken.clear()
    writer.close()
    assert store.count() == 10

"""Writing the audit trail off the request path: a bounded queue and one thread that commits it in
batches.

``offer(item)`` is O(1) and never blocks a request (an item: what a row needs, or a row; see
runtime/audit/rows.py). Under the default policy a full queue drops
the row and counts it (``queue_full``); sampled payloads go first: past half the queue none is taken
(``payload_shed``), so the metadata keeps its room. Under ``fail_closed`` the service asks
:attr:`accepting` before it serves a request and answers 503 while the queue is full; the rows of
requests already admitted are still taken, up to twice ``max_queue`` (then dropped and counted):
memory stays bounded. The thread takes ``batch_rows`` at a time (fewer when the oldest has waited
``flush_s``: under load a batch is a full one, so its cost per row is small) and hands them to its ``sink``,
which makes the rows and appends them in one transaction, in this thread or in a writer process
(runtime/audit/sink.py);
a write that fails (a full or stalled disk, a writer process that died) is retried with a growing
pause while the queue stays bounded, and writing resumes when the disk (or a new process) does.
``close`` flushes what it can within its deadline; what is left is dropped and counted
(``shutdown``). Nothing is lost silently: every row offered is written or counted as dropped, by
reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Protocol

from .rows import Item
from .sink import Sink, StoreSink
from .store import AuditStore, Retention

log = logging.getLogger(__name__)


class Overflow(StrEnum):
    DROP = "drop"
    """Keep the metadata, shed the payloads: past half the queue no payload is taken, and a row
    that finds the queue full is dropped and counted; the request is answered."""
    FAIL_CLOSED = "fail_closed"
    """The service refuses requests (503) while the queue is full (see :attr:`AuditWriter.accepting`)."""


class AuditObserver(Protocol):
    def on_queued(self, rows: int) -> None: ...

    def on_written(self, rows: int, seconds: float) -> None: ...

    def on_dropped(self, reason: str, rows: int) -> None: ...


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        *,
        key: bytes | None = None,
        sink: Sink | None = None,
        max_queue: int = 10_000,
        batch_rows: int = 500,
        flush_s: float = 0.2,
        overflow: Overflow = Overflow.DROP,
        observer: AuditObserver | None = None,
        retry_max_s: float = 5.0,
        retention: Retention | None = None,
        purge_every_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Items go to ``sink`` (default: made into rows with ``key`` and appended to ``store`` by this
        thread); ``retention``: what the thread purges from ``store`` every ``purge_every_s`` (by
        ``clock``), between batches."""
        if max_queue < 1 or batch_rows < 1:
            raise ValueError(f"max_queue and batch_rows must be >= 1, got {max_queue}, {batch_rows}")
        self.store = store
        self.sink: Sink = sink if sink is not None else StoreSink(store, key)
        self.max_queue = max_queue
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.overflow = overflow
        self._bound = max_queue * (2 if overflow is Overflow.FAIL_CLOSED else 1)
        """What the queue holds at most (under fail-closed, the rows of requests already admitted)."""
        self.observer = observer
        self.retry_max_s = retry_max_s
        self.retention = retention
        self.purge_every_s = purge_every_s
        self.purged: dict[str, int] = {}
        self._clock = clock
        self._next_purge = clock()
        self.queued = 0
        self._queued_told = 0
        self._told = threading.Lock()
        self.written = 0
        self.dropped: dict[str, int] = {}
        self.write_errors = 0
        self._queue: deque[Item] = deque()
        self._writing = 0
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="ballast-audit", daemon=True)
        self._thread.start()

    @property
    def held(self) -> int:
        """Rows queued or being written."""
        return len(self._queue) + self._writing

    @property
    def accepting(self) -> bool:
        return not self._closing and self.held < self.max_queue

    @property
    def room_for_payloads(self) -> bool:
        """Whether a sampled payload may be queued: the queue is less than half full."""
        return self.held < self.max_queue // 2

    def offer(self, item: Item) -> bool:
        """Queue ``item``; ``False`` when it was dropped (and counted)."""
        if self._closing or len(self._queue) + self._writing >= self._bound:
            self._drop("shutdown" if self._closing else "queue_full", 1)
            return False
        self._queue.append(item)  # deque.append is atomic: no lock on the request path
        self.queued += 1  # told to the observer from the writer's thread, per batch
        if len(self._queue) == self.batch_rows:  # a full batch: wake the thread if it waits
            with self._wake:
                self._wake.notify()
        return True

    def report(self) -> None:
        """Bring the observer's count of queued rows up to date (the writer's thread does so per
        batch; call it before the metrics are read)."""
        self._tell_queued()

    def _tell_queued(self) -> None:
        with self._told:
            queued = self.queued
            if self.observer is not None and queued > self._queued_told:
                self.observer.on_queued(queued - self._queued_told)
            self._queued_told = queued

    def count_dropped(self, reason: str, rows: int = 1) -> None:
        """Count rows the caller dropped (a payload shed before it was offered)."""
        self._drop(reason, rows)

    def _drop(self, reason: str, rows: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + rows
        if self.observer is not None:
            self.observer.on_dropped(reason, rows)

    def _wait_s(self, sent: float) -> float:
        """How long the thread waits before its next batch: none once a batch is full (or the
        writer closes), else until ``flush_s`` after the last batch went (``sent``), or ``flush_s``
        more when nothing is queued (then it purges)."""
        if self._closing or len(self._queue) >= self.batch_rows:
            return 0.0
        left = sent + self.flush_s - time.monotonic()
        if left > 0:
            return left
        return 0.0 if self._queue else self.flush_s

    def _run(self) -> None:
        sent = time.monotonic()
        while True:
            with self._wake:
                wait_s = self._wait_s(sent)
                if wait_s > 0:
                    self._wake.wait(wait_s)
            if not self._closing:
                self._purge()
            if not self._queue:
                if self._closing:
                    return
                continue
            if self._wait_s(sent) > 0:  # woken before the batch is due
                continue
            sent = time.monotonic()
            batch = [self._queue.popleft() for _ in range(min(self.batch_rows, len(self._queue)))]
            self._tell_queued()
            self._writing = len(batch)
            payloads = sum(1 for item in batch if isinstance(item, Mapping) and item.get("kind") == "payload")
            chained = len(batch) - payloads
            pause = 0.05
            while True:
                started = time.perf_counter()
                try:
                    failed = self.sink.append(batch)
                except Exception:  # a full or stalled disk, a locked file: retry, bounded
                    self.write_errors += 1
                    if self._closing:
                        self._drop("write_failed", chained)
                        break
                    log.warning("audit write failed; retrying in %.2f s", pause, exc_info=True)
                    time.sleep(pause)
                    pause = min(pause * 2, self.retry_max_s)
                    continue
                self.written += chained - failed
                if failed:
                    self._drop("build_failed", failed)
                if self.observer is not None:
                    self.observer.on_written(chained - failed, time.perf_counter() - started)
                break
            self._writing = 0

    def _purge(self) -> None:
        if self.retention is None or self._clock() < self._next_purge:
            return
        self._next_purge = self._clock() + self.purge_every_s
        try:
            for kind, rows in self.store.purge_expired(self.retention, self._clock()).items():
                self.purged[kind] = self.purged.get(kind, 0) + rows
        except Exception:  # a locked or failing disk: the next round tries again
            log.warning("audit purge failed", exc_info=True)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush within ``timeout_s``; rows still held then are dropped and counted (``shutdown``)."""
        self._closing = True
        with self._wake:
            self._wake.notify()
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self._tell_queued()
        if self._thread.is_alive() or self._queue:
            left = len(self._queue)
            self._queue.clear()
            if left:
                self._drop("shutdown", left)
        self.sink.close()

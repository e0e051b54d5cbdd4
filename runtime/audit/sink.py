"""Where the audit writer's batches go: rows made and stored in the worker's writer thread
(:class:`StoreSink`), or in a writer process of their own (:class:`ProcessSink`, the default), so
that a worker pays only for taking what a row needs and handing it over.

A :class:`ProcessSink` sends each batch (its items plain values, see runtime/audit/rows.py; the
batch marshalled, or pickled when a row holds anything else) down a pipe to
``python -m runtime.audit.sink``, which makes the rows (digests under the trail's key, sent once
through the pipe when it starts; JSON) and appends them to the SQLite store in one transaction, then
answers ``ok`` (or the error, having appended nothing). One batch is in flight at a time: while the
process writes, the worker's queue fills, bounded and counted as before. A process that dies
(killed, out of memory) is started again by the next append; the batch it held is sent again marked
*unsure*, and the new process first looks the batch's first row up (kind, request id, time) so that
a batch committed just before the death is not written twice. The process ignores interrupts and
ends when its pipe closes: when the worker closes the sink, or dies.
"""

from __future__ import annotations

import fcntl
import logging
import marshal
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

from .rows import Item, RowBuilder, from_plain, plain
from .store import AuditStore, Line

log = logging.getLogger(__name__)

_ROOT = Path(__file__).resolve().parents[2]
"""The directory that holds the ``runtime`` package (the process imports it from there)."""

OK = b"ok"


class Sink(Protocol):
    def append(self, items: Sequence[Item], unsure: bool = False) -> int:
        """Make ``items`` into rows and append them in one transaction (or raise, having appended
        none); how many could not be made (a bug: counted, not retried). ``unsure``: the batch may
        be stored already (sent before a writer died); skip it if so."""
        ...

    def close(self) -> None: ...


class StoreSink:
    """Rows made and appended in the calling thread."""

    def __init__(self, store: AuditStore, key: bytes | None) -> None:
        self.store = store
        self._build = RowBuilder(key)

    def append(self, items: Sequence[Item], unsure: bool = False) -> int:
        rows, failed = self._build.batch(items)
        chained = [row for row in rows if isinstance(row, Line)]
        if rows and not (unsure and chained and self.store.holds(chained[0])):
            self.store.append(rows)
        return failed

    def close(self) -> None:
        """The store stays open: the service reads it."""


def encode(unsure: bool, items: Sequence[Item]) -> bytes:
    """A batch as one frame for the pipe: marshalled (items are plain values), or pickled when
    marshal cannot write one (a row made elsewhere holding, say, an enum)."""
    batch = [plain(item) for item in items]
    try:
        return b"m" + marshal.dumps((unsure, batch), 2)
    except ValueError:
        return b"p" + pickle.dumps((unsure, batch), protocol=pickle.HIGHEST_PROTOCOL)


def decode(frame: bytes) -> tuple[bool, list[Item]]:
    unsure, batch = (pickle.loads if frame[:1] == b"p" else marshal.loads)(memoryview(frame)[1:])
    return unsure, [from_plain(value) for value in batch]


PIPE_BYTES = 1 << 20
"""The pipe to the writer process holds a whole batch (Linux's default, 64 KiB, holds a fifth of
one: the worker would wait for the process to read the rest)."""


def _widen(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (OSError, AttributeError):  # not Linux, or above /proc/sys/fs/pipe-max-size: the default
        log.debug("the audit pipe keeps its default size", exc_info=True)


class SinkFailed(RuntimeError):
    """The writer process did not append the batch (it said why, or it is gone)."""


class ProcessSink:
    def __init__(
        self, path: str | Path, key: bytes, *, start_timeout_s: float = 30.0, close_timeout_s: float = 10.0
    ) -> None:
        """A writer process for the audit database at ``path``, started at once (and again by an
        append after it died); ``key``: the trail's secret, for the input digests."""
        self.path = Path(path)
        self._key = key
        self.start_timeout_s = start_timeout_s
        self.close_timeout_s = close_timeout_s
        self.starts = 0
        """How many writer processes were started (more than one: one died and was replaced)."""
        self._process: subprocess.Popen[bytes] | None = None
        self._to: Connection | None = None
        self._from: Connection | None = None
        self._unsure = False
        self._lock = threading.Lock()  # close() from another thread while append() waits
        self._closed = False
        with self._lock:
            self._start()

    @property
    def pid(self) -> int | None:
        """The writer process's id while one runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def append(self, items: Sequence[Item], unsure: bool = False) -> int:
        """Send ``items`` to the writer process and wait until it stored them; :class:`SinkFailed`
        when it did not (nothing of the batch stored, or, after a death, perhaps all of it: the
        batch is then sent again as unsure)."""
        frame = encode(unsure or self._unsure, items)
        with self._lock:
            if self._closed:
                raise SinkFailed("the audit sink is closed")
            if self._process is None:  # it died (found on the pipe, no system call per batch)
                self._start()
            to, back = self._to, self._from
        assert to is not None
        assert back is not None
        try:
            to.send_bytes(frame)
            answer = pickle.loads(back.recv_bytes())
        except (OSError, EOFError) as exc:
            self._unsure = True
            self._stop()
            raise SinkFailed(f"the audit writer process is gone ({exc.__class__.__name__})") from None
        if isinstance(answer, str):
            raise SinkFailed(answer)
        self._unsure = False
        return int(answer)

    def _start(self) -> None:
        self._stop()
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        _widen(from_parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "runtime.audit.sink", str(to_child), str(from_child), str(self.path)],
                pass_fds=(to_child, from_child),
                env=env,
                start_new_session=True,  # a terminal's Ctrl-C is the worker's to handle, not the writer's
            )
        finally:
            os.close(to_child)
            os.close(from_child)
        self._process = process
        self._to = Connection(from_parent, readable=False)
        self._from = Connection(to_parent, writable=False)
        self.starts += 1
        self._to.send_bytes(self._key)  # through the pipe: not in its arguments or environment
        if not self._from.poll(self.start_timeout_s) or self._from.recv_bytes() != OK:
            self._stop()
            raise SinkFailed(f"the audit writer process did not start within {self.start_timeout_s:.0f} s")
        log.info("audit writer process %d started for %s", process.pid, self.path)

    def _stop(self, timeout_s: float = 0.0) -> None:
        """Close the pipe to the process (it finishes its batch, answers, and exits), wait
        ``timeout_s``, then kill it; the pipe back is closed last, once nothing can be on its way."""
        if self._to is not None:
            self._to.close()
        process, self._process = self._process, None
        if process is not None:
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._from is not None:
            self._from.close()
        self._to = self._from = None

    def close(self) -> None:
        """End the writer process (after the batch it holds, within ``close_timeout_s``)."""
        with self._lock:
            self._closed = True
            self._stop(self.close_timeout_s)


def serve(inbox: Connection, outbox: Connection, store: AuditStore) -> None:
    """The writer process's loop: the key first, then each batch that arrives on ``inbox``, appended
    to ``store``; answers on ``outbox`` (``ok`` once ready; per batch, the count of items that could
    not be made, or the error); returns at the pipe's end."""
    try:
        sink = StoreSink(store, inbox.recv_bytes())
        outbox.send_bytes(OK)
        while True:
            unsure, items = decode(inbox.recv_bytes())
            try:
                answer: int | str = sink.append(items, unsure)
            except Exception as exc:  # a full or stalled disk: the worker retries with a pause
                log.warning("audit append failed", exc_info=True)
                answer = f"{exc.__class__.__name__}: {exc}"
            outbox.send_bytes(pickle.dumps(answer))
    except EOFError:
        return


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the worker ends it by closing the pipe
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s audit-writer: %(message)s")
    read_fd, write_fd, path = int(argv[0]), int(argv[1]), argv[2]
    store = AuditStore(path)
    try:
        serve(Connection(read_fd, writable=False), Connection(write_fd, readable=False), store)
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1:])

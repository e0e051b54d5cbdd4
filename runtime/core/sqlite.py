"""An SQLite file that a service's worker processes share (the lifecycle state, the audit trail).

Write-ahead logging lets workers read while one writes; each process holds one connection, guarded
by a lock (the event loop and worker threads both use it); every write is one transaction taken at
once (``BEGIN IMMEDIATE``), so that two workers never deadlock upgrading a read lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class SharedDatabase:
    def __init__(self, path: str | Path, schema: str, pragmas: Sequence[str] = (), rows_by_name: bool = False) -> None:
        """Open (and create) the database at ``path`` with the statements of ``schema``."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        if rows_by_name:
            self._db.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", *pragmas):
            self._db.execute(f"PRAGMA {pragma}")  # our own constants
        with self._write() as db:  # executescript would commit on its own: one statement at a time
            for statement in filter(str.strip, schema.split(";")):
                db.execute(statement)

    @property
    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

"""The audit trail in an embedded SQLite database (WAL): one row per prediction, chained by hash.

Each row is stored as its canonical JSON with its sequence number, the previous row's hash and its
own (runtime/audit/chain.py); the columns that queries filter on (request id, time, version, route)
are generated from the JSON, so that they cannot say something the hashed row does not. Appends are
one ``BEGIN IMMEDIATE`` transaction per batch that reads the chain's last hash first: several
workers writing one file extend one chain.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.sqlite import SharedDatabase
from .chain import GENESIS, row_hash, verify

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    row TEXT NOT NULL,
    request_id TEXT GENERATED ALWAYS AS (json_extract(row, '$.request_id')) VIRTUAL,
    at REAL GENERATED ALWAYS AS (json_extract(row, '$.at')) VIRTUAL,
    version TEXT GENERATED ALWAYS AS (json_extract(row, '$.version')) VIRTUAL,
    route TEXT GENERATED ALWAYS AS (json_extract(row, '$.route')) VIRTUAL
);
CREATE INDEX IF NOT EXISTS audit_request ON audit (request_id);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS audit_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"""


class AuditStore(SharedDatabase):
    def __init__(self, path: str | Path) -> None:
        super().__init__(path, SCHEMA)

    def _tail(self, db: sqlite3.Connection) -> tuple[int, str]:
        last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if last is not None:
            return int(last[0]), str(last[1])
        anchor = db.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
        return (int(anchor[0]), str(anchor[1])) if anchor is not None else (0, GENESIS)

    def append(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Add ``rows`` at the end of the chain, in one transaction; the last sequence number."""
        with self._write() as db:
            seq, previous = self._tail(db)
            values = []
            for row in rows:
                seq += 1
                digest = row_hash(previous, row)
                values.append((seq, previous, digest, json.dumps(row, sort_keys=True, separators=(",", ":"))))
                previous = digest
            db.executemany("INSERT INTO audit (seq, prev_hash, hash, row) VALUES (?, ?, ?, ?)", values)
        return seq

    def verify(self) -> list[str]:
        """What is wrong with the chain (empty: nothing), each problem naming its row."""
        with self._lock:
            anchor = self._db.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
            rows = self._db.execute("SELECT seq, prev_hash, hash, row FROM audit ORDER BY seq").fetchall()
        return verify([(s, p, h, json.loads(r)) for s, p, h, r in rows], tuple(anchor) if anchor else None)

    def purge_before(self, at: float, batch: int = 1000) -> int:
        """Delete rows written before ``at`` (seconds since the epoch), oldest first, at most ``batch``
        in one transaction; the chain stays verifiable from an anchor (the last deleted row's hash)."""
        with self._write() as db:
            found = db.execute("SELECT seq, hash FROM audit WHERE at < ? ORDER BY seq LIMIT ?", (at, batch)).fetchall()
            if not found:
                return 0
            first = db.execute("SELECT MIN(seq) FROM audit").fetchone()[0]
            last_seq, last_hash = found[-1]
            if found[0][0] != first or last_seq - first + 1 != len(found):
                raise ValueError("rows to purge are not the chain's oldest, in order")
            db.execute("DELETE FROM audit WHERE seq <= ?", (last_seq,))
            db.execute(
                "INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                (last_seq, last_hash),
            )
        return len(found)

    def query(
        self,
        *,
        request_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        version: str | None = None,
        route: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Rows matching every filter given, oldest first, each with its ``seq``; only those after
        ``after_seq`` (to page through the trail)."""
        clauses, params = [], []
        for column, op, value in (
            ("seq", ">", after_seq or None),
            ("request_id", "=", request_id),
            ("at", ">=", since),
            ("at", "<", until),
            ("version", "=", version),
            ("route", "=", route),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")  # our column names and operators only
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, row FROM audit {where} ORDER BY seq LIMIT ?", (*params, limit)
            ).fetchall()
        return [{"seq": seq, **json.loads(row)} for seq, row in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM audit").fetchone()[0])

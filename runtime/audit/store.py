"""The audit trail in an embedded SQLite database (WAL): one row per prediction, chained by hash;
sampled payloads beside it, outside the chain (they are purged sooner, and a payload is not evidence
of what was decided, the metadata is).

Each row is stored as its canonical JSON with its sequence number, the previous row's hash and its
own (runtime/audit/chain.py); the columns that queries filter on (request id, time, version, route)
are generated from the JSON, so that they cannot say something the hashed row does not. Appends are
one ``BEGIN IMMEDIATE`` transaction per batch that reads the chain's last hash first: several
workers writing one file extend one chain.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..core.sqlite import SharedDatabase
from .chain import GENESIS, canonical, text_hash, verify

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    row TEXT NOT NULL,
    request_id TEXT GENERATED ALWAYS AS (json_extract(row, '$.request_id')) VIRTUAL,
    at REAL GENERATED ALWAYS AS (json_extract(row, '$.at')) VIRTUAL,
    version TEXT GENERATED ALWAYS AS (json_extract(row, '$.version')) VIRTUAL,
    route TEXT GENERATED ALWAYS AS (json_extract(row, '$.route')) VIRTUAL,
    kind TEXT GENERATED ALWAYS AS (json_extract(row, '$.kind')) VIRTUAL
);
CREATE INDEX IF NOT EXISTS audit_request ON audit (request_id);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS payloads (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    at REAL NOT NULL,
    row TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payloads_request ON payloads (request_id);
CREATE INDEX IF NOT EXISTS payloads_at ON payloads (at);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    pairs TEXT NOT NULL,
    service TEXT,
    version TEXT,
    predicted_at REAL NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_predicted ON feedback (predicted_at);
CREATE TABLE IF NOT EXISTS audit_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each kind of record is kept, in seconds (``None``: for ever)."""

    metadata_s: float | None = None
    payloads_s: float | None = None
    feedback_s: float | None = None

    @classmethod
    def from_days(cls, metadata: float | None, payloads: float | None, feedback: float | None) -> Retention:
        def seconds(days: float | None) -> float | None:
            return None if days is None else days * 86_400.0

        return cls(seconds(metadata), seconds(payloads), seconds(feedback))


class AuditStore(SharedDatabase):
    def __init__(self, path: str | Path) -> None:
        super().__init__(path, SCHEMA)

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction on the trail's database (the feedback's labels are written in one)."""
        return self._write()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads, while no other thread of this process uses it."""
        with self._lock:
            yield self._db

    def _tail(self, db: sqlite3.Connection) -> tuple[int, str]:
        last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if last is not None:
            return int(last[0]), str(last[1])
        anchor = db.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
        return (int(anchor[0]), str(anchor[1])) if anchor is not None else (0, GENESIS)

    def append(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Add ``rows`` at the end of the chain (payload rows to their own table), in one transaction;
        the last sequence number."""
        payloads = [
            (row["request_id"], row["at"], orjson.dumps(dict(row)).decode())
            for row in rows
            if row.get("kind") == "payload"
        ]
        with self._write() as db:
            seq, previous = self._tail(db)
            values = []
            for row in rows:
                if row.get("kind") == "payload":
                    continue
                seq += 1
                text = canonical(row)
                digest = text_hash(previous, text)
                values.append((seq, previous, digest, text.decode()))
                previous = digest
            db.executemany("INSERT INTO audit (seq, prev_hash, hash, row) VALUES (?, ?, ?, ?)", values)
            if payloads:
                db.executemany("INSERT INTO payloads (request_id, at, row) VALUES (?, ?, ?)", payloads)
        return seq

    def holds(self, row: Mapping[str, Any]) -> bool:
        """Whether a row of ``row``'s kind, request id and time is stored (a batch sent again after
        its writer died may have been committed)."""
        with self._lock:
            found = self._db.execute(
                "SELECT 1 FROM audit WHERE request_id = ? AND at = ? AND kind = ? LIMIT 1",
                (row.get("request_id"), row.get("at"), row.get("kind")),
            ).fetchone()
        return found is not None

    def verify(self) -> list[str]:
        """What is wrong with the chain (empty: nothing), each problem naming its row."""
        with self._lock:
            anchor = self._db.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
            rows = self._db.execute("SELECT seq, prev_hash, hash, row FROM audit ORDER BY seq").fetchall()
        return verify([(s, p, h, r.encode()) for s, p, h, r in rows], tuple(anchor) if anchor else None)

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
        kind: str | None = None,
        decision: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Rows matching every filter given, oldest first, each with its ``seq``; only those after
        ``after_seq`` (to page through the trail). ``decision``: one of the row's answers has it."""
        clauses: list[str] = []
        params: list[Any] = []
        if decision is not None:
            clauses.append("EXISTS (SELECT 1 FROM json_each(row, '$.answers') WHERE value ->> '$.decision' = ?)")
            params.append(decision)
        for column, op, value in (
            ("seq", ">", after_seq or None),
            ("request_id", "=", request_id),
            ("at", ">=", since),
            ("at", "<", until),
            ("version", "=", version),
            ("route", "=", route),
            ("kind", "=", kind),
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

    def payloads(self, request_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Sampled payloads, oldest first (of one request, if given)."""
        where, params = ("WHERE request_id = ?", [request_id]) if request_id is not None else ("", [])
        with self._lock:
            rows = self._db.execute(
                f"SELECT row FROM payloads {where} ORDER BY id LIMIT ?", (*params, limit)
            ).fetchall()
        return [json.loads(row) for (row,) in rows]

    def _purge_oldest(self, table: str, column: str, at: float, batch: int) -> int:
        """Delete at most ``batch`` rows of ``table`` (payloads, feedback) whose ``column`` is before
        ``at``, oldest first."""
        with self._write() as db:
            cursor = db.execute(  # our table and column names only
                f"DELETE FROM {table} WHERE rowid IN "
                f"(SELECT rowid FROM {table} WHERE {column} < ? ORDER BY {column} LIMIT ?)",
                (at, batch),
            )
        return cursor.rowcount

    def purge_expired(self, retention: Retention, now: float, batch: int = 1000, most: int = 100_000) -> dict[str, int]:
        """Delete what ``retention`` no longer keeps, ``batch`` rows per transaction (so that writers
        wait at most one batch), at most ``most`` rows of a kind per call; how many of each went."""
        purged: dict[str, int] = {}
        for kind, keep_s, purge in (
            ("metadata", retention.metadata_s, self.purge_before),
            ("payloads", retention.payloads_s, functools.partial(self._purge_oldest, "payloads", "at")),
            ("feedback", retention.feedback_s, functools.partial(self._purge_oldest, "feedback", "predicted_at")),
        ):
            if keep_s is None:
                continue
            total = 0
            while total < most:
                gone = purge(now - keep_s, batch)
                total += gone
                if gone < batch:
                    break
            purged[kind] = total
        return purged

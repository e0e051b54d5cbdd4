"""The audit trail in an embedded SQLite database (WAL): one row per prediction, chained by hash;
sampled payloads beside it, outside the chain (they are purged sooner, and a payload is not evidence
of what was decided, the metadata is).

Rows are stored in blocks, one per batch the writer appends: a block holds its rows' JSON (one per
line, exactly the text that was hashed), their hashes side by side, the hash of the row before its
first (runtime/audit/chain.py), the range of its rows' times and the count of its predictions per
service and version. A row is still a row: it has its own sequence number (the block's first plus
its place) and its own hash, and a verification names it. One database row per batch instead of
one per prediction is what makes the trail cheap to write: SQLite's cost is per database row
and per index entry, not per byte.

Two indexes: the blocks by time (a range of times reads the blocks that overlap it), and
``audit_ids``, each row's request id with its sequence number (the lookups of labelled feedback
and of a request's rows). A B-tree's cost is where its keys land: random ids dirty a page each, ids
that grow with time are appended at the end. The ids Ballast gives requests are time-ordered
(runtime/core/record.py: ``new_request_id``); a caller's own ``X-Request-ID`` is indexed as it is.
Other filters (version, route, kind, decision) read the blocks in order and test each row.

Appends are one ``BEGIN IMMEDIATE`` transaction per batch that reads the chain's tail first: several
workers writing one file extend one chain. A purge removes the oldest rows (whole blocks, or the
head of a block, which is rewritten to start later) and keeps the last removed row's sequence number
and hash as the anchor the chain is verified from.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from ..core.sqlite import SharedDatabase
from .chain import GENESIS, HASH, Block, canonical, link, verify

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_blocks (
    first_seq INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL,
    at_first REAL NOT NULL,
    at_last REAL NOT NULL,
    prev_hash BLOB NOT NULL,
    hashes BLOB NOT NULL,
    predictions TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_blocks_at ON audit_blocks (at_last);
CREATE TABLE IF NOT EXISTS audit_ids (
    request_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (request_id, seq)
) WITHOUT ROWID;
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
    hash BLOB NOT NULL
)
"""

INSERT_BLOCK = (
    "INSERT INTO audit_blocks (first_seq, rows, at_first, at_last, prev_hash, hashes, predictions, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class Line(NamedTuple):
    """A chained row made ready to store: what the indexes and counts need, and its JSON."""

    request_id: str
    at: float
    kind: str
    service: str | None
    version: str | None
    text: bytes

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Line:
        """A row given as a mapping (its JSON: :func:`runtime.audit.chain.canonical`)."""
        return cls(
            str(row.get("request_id")),
            float(row["at"]),
            str(row.get("kind", "prediction")),
            row.get("service"),
            row.get("version"),
            canonical(row),
        )


def _key(service: str | None, version: str | None) -> str:
    return f"{service or ''}\x00{version or ''}"


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


class OldFormat(RuntimeError):
    """The file holds a trail in the format of one row per database row, which this version does
    not read."""


class AuditStore(SharedDatabase):
    def __init__(self, path: str | Path) -> None:
        if Path(path).exists():  # looked at before anything is created in it
            db = sqlite3.connect(path, timeout=10.0)
            try:
                old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'").fetchone()
            finally:
                db.close()
            if old is not None:
                raise OldFormat(
                    f"{path} holds an audit trail in an earlier format (a table 'audit'): keep it for reading "
                    "with the version that wrote it, and give this one a new BALLAST_AUDIT_PATH"
                )
        super().__init__(path, SCHEMA)

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction on the trail's database (the feedback's labels are written in one)."""
        return self._write()

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own in one read transaction, for reads that may be long (a query, a
        verification, a day's counts): one snapshot, read as it goes, and the process's connection,
        which the writer needs, is not held meanwhile."""
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            db.execute("BEGIN")
            yield db
        finally:
            db.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads, while no other thread of this process uses it."""
        with self._lock:
            yield self._db

    @staticmethod
    def _tail(db: sqlite3.Connection) -> tuple[int, bytes]:
        """The last row's sequence number and hash (from the anchor when every row was purged)."""
        last = db.execute(
            "SELECT first_seq + rows - 1, substr(hashes, -?) FROM audit_blocks ORDER BY first_seq DESC LIMIT 1", (HASH,)
        ).fetchone()
        if last is not None:
            return int(last[0]), bytes(last[1])
        anchor = db.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
        return (int(anchor[0]), bytes(anchor[1])) if anchor is not None else (0, GENESIS)

    def append(self, rows: Sequence[Line | Mapping[str, Any]]) -> int:
        """Add ``rows`` at the end of the chain as one block (payload rows, given as mappings with
        ``kind`` ``payload``, to their own table), in one transaction; the last sequence number."""
        lines: list[Line] = []
        payloads = []
        for row in rows:
            if isinstance(row, Line):
                lines.append(row)
            elif row.get("kind") == "payload":
                payloads.append((row["request_id"], row["at"], orjson.dumps(dict(row)).decode()))
            else:
                lines.append(Line.of(row))
        predictions = Counter(_key(line.service, line.version) for line in lines if line.kind == "prediction")
        body = b"\n".join(line.text for line in lines)
        times = [line.at for line in lines]
        with self._write() as db:
            seq, previous = self._tail(db)
            if lines:
                first, before, hashes = seq + 1, previous, []
                for line in lines:
                    previous = link(previous, line.text)
                    hashes.append(previous)
                db.execute(
                    INSERT_BLOCK,
                    (
                        first,
                        len(lines),
                        min(times),
                        max(times),
                        before,
                        b"".join(hashes),
                        orjson.dumps(predictions).decode(),
                        body,
                    ),
                )
                db.executemany(
                    "INSERT OR IGNORE INTO audit_ids (request_id, seq) VALUES (?, ?)",
                    [(line.request_id, first + i) for i, line in enumerate(lines)],
                )
                seq += len(lines)
            if payloads:
                db.executemany("INSERT INTO payloads (request_id, at, row) VALUES (?, ?, ?)", payloads)
        return seq

    @staticmethod
    def _blocks(db: sqlite3.Connection, limit: int = -1) -> Iterator[Block]:
        """The blocks, oldest first (at most ``limit``)."""
        for first, prev, hashes, body in db.execute(
            "SELECT first_seq, prev_hash, hashes, body FROM audit_blocks ORDER BY first_seq LIMIT ?", (limit,)
        ):
            yield Block(int(first), bytes(prev), bytes(hashes), bytes(body))

    def holds(self, row: Line | Mapping[str, Any]) -> bool:
        """Whether a row of ``row``'s kind, request id and time is stored (a batch sent again after
        its writer died may have been committed)."""
        line = row if isinstance(row, Line) else Line.of(row)
        return any(
            found.get("at") == line.at and found.get("kind", "prediction") == line.kind
            for found in self.query(request_id=line.request_id, limit=1000)
        )

    def verify(self) -> list[str]:
        """What is wrong with the chain (empty: nothing), each problem naming its row. Read on a
        connection of its own, in one read transaction: one snapshot of the trail (an append or a
        purge meanwhile is not seen half done), a block at a time (a long trail is not held in
        memory), and the writers of this process are not kept waiting."""
        with self._reader() as db:
            anchor = db.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
            return verify(self._blocks(db), (int(anchor[0]), bytes(anchor[1])) if anchor else None)

    def purge_before(self, at: float, batch: int = 1000) -> int:
        """Delete the chain's oldest rows written before ``at`` (seconds since the epoch), in order, at
        most ``batch`` in one transaction; the first row not before ``at`` stops it. The chain stays
        verifiable from an anchor (the last deleted row's sequence number and hash)."""
        purged = 0
        with self._write() as db:
            for block in list(self._blocks(db, batch)):
                lines = block.body.split(b"\n")
                times = [float(orjson.loads(text)["at"]) for text in lines]
                head = next((i for i, t in enumerate(times) if t >= at), len(times))
                head = min(head, batch - purged)
                if head == 0:
                    break
                self._purge_head(db, block, lines, times, head)
                purged += head
                if head < len(lines) or purged >= batch:
                    break
        return purged

    @staticmethod
    def _purge_head(db: sqlite3.Connection, block: Block, lines: list[bytes], times: list[float], head: int) -> None:
        """Delete the first ``head`` rows of ``block`` (all: the block), move the anchor after them."""
        last_seq = block.first_seq + head - 1
        last_hash = block.hashes[(head - 1) * HASH : head * HASH]
        ids = [(orjson.loads(text).get("request_id"), block.first_seq + i) for i, text in enumerate(lines[:head])]
        db.executemany("DELETE FROM audit_ids WHERE request_id = ? AND seq = ?", [(str(r), s) for r, s in ids])
        db.execute("DELETE FROM audit_blocks WHERE first_seq = ?", (block.first_seq,))
        if head < len(lines):
            kept = [orjson.loads(text) for text in lines[head:]]
            predictions = Counter(
                _key(row.get("service"), row.get("version"))
                for row in kept
                if row.get("kind", "prediction") == "prediction"
            )
            db.execute(
                INSERT_BLOCK,
                (
                    last_seq + 1,
                    len(lines) - head,
                    min(times[head:]),
                    max(times[head:]),
                    last_hash,
                    block.hashes[head * HASH :],
                    orjson.dumps(predictions).decode(),
                    b"\n".join(lines[head:]),
                ),
            )
        db.execute(
            "INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (last_seq, last_hash),
        )

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
        wanted = {"version": version, "route": route, "kind": kind}
        wanted = {name: value for name, value in wanted.items() if value is not None}

        def matches(row: dict[str, Any]) -> bool:
            if request_id is not None and row.get("request_id") != request_id:
                return False
            if since is not None and row["at"] < since:
                return False
            if until is not None and row["at"] >= until:
                return False
            if any(row.get(name, "prediction" if name == "kind" else None) != value for name, value in wanted.items()):
                return False
            return decision is None or any(
                isinstance(a, dict) and a.get("decision") == decision for a in row.get("answers") or ()
            )

        found: list[dict[str, Any]] = []
        with self._reader() as db:
            for seq, text in self._candidates(db, request_id, since, until, after_seq):
                row = orjson.loads(text)
                if matches(row):
                    found.append({"seq": seq, **row})
                    if len(found) >= limit:
                        break
        return found

    @staticmethod
    def _requested(db: sqlite3.Connection, request_id: str, after_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        """``(seq, JSON)`` of ``request_id``'s rows after ``after_seq``, in order (through the ids)."""
        seqs = [
            int(s)
            for (s,) in db.execute(
                "SELECT seq FROM audit_ids WHERE request_id = ? AND seq > ? ORDER BY seq", (request_id, after_seq)
            )
        ]
        for seq in seqs:
            block = db.execute(
                "SELECT first_seq, body FROM audit_blocks WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1", (seq,)
            ).fetchone()
            if block is not None:
                lines = bytes(block[1]).split(b"\n")
                if 0 <= seq - block[0] < len(lines):
                    yield seq, lines[seq - block[0]]

    @staticmethod
    def _candidates(
        db: sqlite3.Connection, request_id: str | None, since: float | None, until: float | None, after_seq: int
    ) -> Iterator[tuple[int, bytes]]:
        """``(seq, JSON)`` of the rows after ``after_seq`` that may match, in order: a request's
        rows through the ids, else the rows of the blocks whose times overlap ``since``-``until``."""
        if request_id is not None:
            yield from AuditStore._requested(db, request_id, after_seq)
            return
        clauses: list[str] = ["first_seq + rows - 1 > ?"]
        params: list[float] = [after_seq]
        if since is not None:
            clauses.append("at_last >= ?")
            params.append(since)
        if until is not None:
            clauses.append("at_first < ?")
            params.append(until)
        cursor = db.execute(
            f"SELECT first_seq, body FROM audit_blocks WHERE {' AND '.join(clauses)} ORDER BY first_seq", params
        )
        for first, body in cursor:
            for i, text in enumerate(bytes(body).split(b"\n")):
                if first + i > after_seq:
                    yield first + i, text

    def predictions(self, since: float) -> dict[tuple[str, str], int]:
        """Predictions made from ``since`` on, per (service, version): counted per block, rows read
        only in the blocks that straddle ``since``."""
        counts: Counter[str] = Counter()
        with self._reader() as db:
            straddling = []
            for first, at_first, predictions in db.execute(
                "SELECT first_seq, at_first, predictions FROM audit_blocks WHERE at_last >= ?", (since,)
            ):
                if at_first >= since:
                    counts.update(orjson.loads(predictions))
                else:
                    straddling.append(first)
            for first in straddling:  # the rows themselves only here
                (body,) = db.execute("SELECT body FROM audit_blocks WHERE first_seq = ?", (first,)).fetchone()
                for text in bytes(body).split(b"\n"):
                    row = orjson.loads(text)
                    if row["at"] >= since and row.get("kind", "prediction") == "prediction":
                        counts[_key(row.get("service"), row.get("version"))] += 1
        return {(service, version): n for key, n in counts.items() for service, version in [key.split("\x00", 1)]}

    def prediction(self, request_id: str, db: sqlite3.Connection | None = None) -> dict[str, Any] | None:
        """The first prediction row of ``request_id`` (on ``db``, inside a transaction the caller holds)."""
        for _, text in self._requested(db if db is not None else self._db, request_id):
            row: dict[str, Any] = orjson.loads(text)
            if row.get("kind", "prediction") == "prediction":
                return row
        return None

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(rows), 0) FROM audit_blocks").fetchone()[0])

    def payloads(self, request_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Sampled payloads, oldest first (of one request, if given)."""
        where, params = ("WHERE request_id = ?", [request_id]) if request_id is not None else ("", [])
        with self._lock:
            rows = self._db.execute(
                f"SELECT row FROM payloads {where} ORDER BY id LIMIT ?", (*params, limit)
            ).fetchall()
        return [orjson.loads(row) for (row,) in rows]

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

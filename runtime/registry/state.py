"""The lifecycle state of a service's models, in an embedded SQLite database: the aliases
(``production``, ``candidate``), the rollout in progress, the evidence its workers gather, and every
transition with who, when and why.

One file per service (a path setting), opened by each of its workers: SQLite's write-ahead log lets
them read while one writes, and ``BEGIN IMMEDIATE`` makes each change one transaction. The state
survives restarts: a worker that starts in the middle of a rollout finds it here. Every method is a
short transaction; none runs per request (workers add their evidence in batches).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.sqlite import SharedDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS aliases (
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    version TEXT NOT NULL,
    since REAL NOT NULL,
    by TEXT NOT NULL,
    PRIMARY KEY (model, alias)
);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    previous TEXT,
    state TEXT NOT NULL,
    stage INTEGER NOT NULL DEFAULT 0,
    stage_since REAL NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    inconclusive INTEGER NOT NULL DEFAULT 0,
    started_by TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    reason TEXT,
    policy TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_rollout ON rollouts (model) WHERE ended_at IS NULL;
CREATE TABLE IF NOT EXISTS evidence (
    rollout INTEGER NOT NULL REFERENCES rollouts (id),
    stage INTEGER NOT NULL,
    worker TEXT NOT NULL,
    counts TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (rollout, stage, worker)
);
CREATE TABLE IF NOT EXISTS watch_evidence (
    rollout INTEGER NOT NULL REFERENCES rollouts (id),
    slot INTEGER NOT NULL,
    worker TEXT NOT NULL,
    counts TEXT NOT NULL,
    PRIMARY KEY (rollout, slot, worker)
);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    rollout INTEGER,
    at REAL NOT NULL,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


class RolloutActive(Exception):
    """A model already has a rollout in progress."""


class Conflict(LookupError):
    """The rollout is not in the state the change expected (another worker or an operator moved it)."""


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    id: int
    model: str
    version: str
    previous: str | None
    """The production version when the rollout started (what a rollback returns to)."""
    state: str
    stage: int
    stage_since: float
    paused: bool
    inconclusive: bool
    started_by: str
    started_at: float
    ended_at: float | None
    reason: str | None
    policy: dict[str, Any]

    @property
    def active(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True, slots=True)
class Transition:
    id: int
    model: str
    rollout: int | None
    at: float
    principal: str
    action: str
    detail: dict[str, Any]


class LifecycleStore(SharedDatabase):
    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        """Open (and create) the database at ``path``; ``clock`` gives wall-clock seconds."""
        self._clock = clock
        super().__init__(path, SCHEMA, pragmas=("foreign_keys=ON",), rows_by_name=True)

    def _record(
        self,
        db: sqlite3.Connection,
        model: str,
        principal: str,
        action: str,
        detail: Mapping[str, Any],
        rollout: int | None,
    ) -> None:
        db.execute(
            "INSERT INTO transitions (model, rollout, at, principal, action, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (model, rollout, self._clock(), principal, action, json.dumps(dict(detail), sort_keys=True)),
        )

    # --- aliases ---------------------------------------------------------------------------------

    def aliases(self, model: str) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT alias, version FROM aliases WHERE model = ?", (model,)).fetchall()
        return {row["alias"]: row["version"] for row in rows}

    def move_alias(self, model: str, alias: str, version: str | None, principal: str, reason: str) -> None:
        """Point ``alias`` at ``version`` (``None`` removes it), and record who and why."""
        with self._write() as db:
            self._move_alias(db, model, alias, version, principal, reason)

    def _move_alias(
        self, db: sqlite3.Connection, model: str, alias: str, version: str | None, principal: str, reason: str
    ) -> None:
        found = db.execute("SELECT version FROM aliases WHERE model = ? AND alias = ?", (model, alias)).fetchone()
        if version is None:
            db.execute("DELETE FROM aliases WHERE model = ? AND alias = ?", (model, alias))
        else:
            db.execute(
                "INSERT INTO aliases (model, alias, version, since, by) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version, since = excluded.since, "
                "by = excluded.by",
                (model, alias, version, self._clock(), principal),
            )
        detail = {"alias": alias, "from": found["version"] if found else None, "to": version, "reason": reason}
        self._record(db, model, principal, "alias", detail, None)

    # --- rollouts --------------------------------------------------------------------------------

    def start_rollout(
        self, model: str, version: str, previous: str | None, principal: str, policy: Mapping[str, Any], state: str
    ) -> RolloutRecord:
        """A new rollout of ``version``; :class:`RolloutActive` if one is in progress."""
        now = self._clock()
        with self._write() as db:
            try:
                cursor = db.execute(
                    "INSERT INTO rollouts (model, version, previous, state, stage, stage_since, started_by, "
                    "started_at, policy) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)",
                    (model, version, previous, state, now, principal, now, json.dumps(dict(policy), sort_keys=True)),
                )
            except sqlite3.IntegrityError:
                raise RolloutActive(f"{model} already has a rollout in progress") from None
            rollout = int(cursor.lastrowid or 0)
            self._record(db, model, principal, "start", {"version": version, "previous": previous}, rollout)
        found = self.rollout(rollout)
        assert found is not None
        return found

    def rollout(self, rollout: int) -> RolloutRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM rollouts WHERE id = ?", (rollout,)).fetchone()
        return _rollout(row) if row is not None else None

    def active_rollout(self, model: str) -> RolloutRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM rollouts WHERE model = ? AND ended_at IS NULL", (model,)).fetchone()
        return _rollout(row) if row is not None else None

    def rollouts(self, model: str, limit: int = 20) -> list[RolloutRecord]:
        """The latest rollouts of ``model``, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM rollouts WHERE model = ? ORDER BY id DESC LIMIT ?", (model, limit)
            ).fetchall()
        return [_rollout(row) for row in rows]

    def change(
        self,
        rollout: int,
        principal: str,
        action: str,
        reason: str,
        *,
        state: str | None = None,
        stage: int | None = None,
        paused: bool | None = None,
        inconclusive: bool | None = None,
        end: bool = False,
        expect: tuple[str, int] | None = None,
        production: str | None = None,
    ) -> RolloutRecord:
        """Change a rollout that is in progress, in one transaction with its record; with ``expect``
        (state, stage), only if it is still there (:class:`Conflict` otherwise). ``production``: move
        the model's production alias to that version in the same transaction (a promotion or a
        rollback is one change: no worker can see one half of it)."""
        now = self._clock()
        with self._write() as db:
            row = db.execute("SELECT * FROM rollouts WHERE id = ? AND ended_at IS NULL", (rollout,)).fetchone()
            if row is None:
                raise LookupError(f"no rollout {rollout} in progress")
            if expect is not None and (row["state"], row["stage"]) != expect:
                raise Conflict(f"rollout {rollout} is at {row['state']} {row['stage']}, not {expect[0]} {expect[1]}")
            fields: dict[str, Any] = {"reason": reason}
            if state is not None:
                fields["state"] = state
            if stage is not None and stage != row["stage"]:
                fields["stage"], fields["stage_since"], fields["inconclusive"] = stage, now, 0
            if paused is not None:
                fields["paused"] = int(paused)
            if inconclusive is not None:
                fields["inconclusive"] = int(inconclusive)
            if end:
                fields["ended_at"] = now
            assignments = ", ".join(f"{name} = ?" for name in fields)
            db.execute(f"UPDATE rollouts SET {assignments} WHERE id = ?", (*fields.values(), rollout))  # our names
            if production is not None:
                self._move_alias(db, row["model"], "production", production, principal, f"rollout {rollout}: {action}")
            detail = {k: v for k, v in fields.items() if k not in ("stage_since", "ended_at")}
            self._record(db, row["model"], principal, action, detail, rollout)
        found = self.rollout(rollout)
        assert found is not None
        return found

    # --- evidence --------------------------------------------------------------------------------

    def add_evidence(self, rollout: int, stage: int, worker: str, counts: Mapping[str, float]) -> None:
        """Add a worker's counts for a stage to what it reported before."""
        with self._write() as db:
            row = db.execute(
                "SELECT counts FROM evidence WHERE rollout = ? AND stage = ? AND worker = ?", (rollout, stage, worker)
            ).fetchone()
            total = _summed([row["counts"]] if row is not None else [], counts)
            db.execute(
                "INSERT INTO evidence (rollout, stage, worker, counts, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (rollout, stage, worker) DO UPDATE SET counts = excluded.counts, "
                "updated = excluded.updated",
                (rollout, stage, worker, json.dumps(total, sort_keys=True), self._clock()),
            )

    def evidence(self, rollout: int, stage: int) -> dict[str, float]:
        """Every worker's counts for a stage, summed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT counts FROM evidence WHERE rollout = ? AND stage = ?", (rollout, stage)
            ).fetchall()
        return _summed(row["counts"] for row in rows)

    def add_watch_evidence(self, rollout: int, slot: int, worker: str, counts: Mapping[str, float]) -> None:
        """Add a worker's counts to a time slot of a watched rollout (slot = wall-clock time divided by
        the slot's length: a sliding window is the sum of its latest slots)."""
        with self._write() as db:
            row = db.execute(
                "SELECT counts FROM watch_evidence WHERE rollout = ? AND slot = ? AND worker = ?",
                (rollout, slot, worker),
            ).fetchone()
            total = _summed([row["counts"]] if row is not None else [], counts)
            db.execute(
                "INSERT INTO watch_evidence (rollout, slot, worker, counts) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (rollout, slot, worker) DO UPDATE SET counts = excluded.counts",
                (rollout, slot, worker, json.dumps(total, sort_keys=True)),
            )

    def watch_evidence(self, rollout: int, first_slot: int) -> dict[str, float]:
        """Every worker's counts of a watched rollout from ``first_slot`` on, summed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT counts FROM watch_evidence WHERE rollout = ? AND slot >= ?", (rollout, first_slot)
            ).fetchall()
        return _summed(row["counts"] for row in rows)

    # --- history ---------------------------------------------------------------------------------

    def history(self, model: str, limit: int = 100) -> list[Transition]:
        """The latest transitions of ``model``, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM transitions WHERE model = ? ORDER BY id DESC LIMIT ?", (model, limit)
            ).fetchall()
        return [
            Transition(r["id"], r["model"], r["rollout"], r["at"], r["principal"], r["action"], json.loads(r["detail"]))
            for r in rows
        ]


def _summed(stored: Iterable[str], *more: Mapping[str, float]) -> dict[str, float]:
    """Counts stored as JSON, and ``more``, added up by name."""
    total: dict[str, float] = {}
    for counts in [*(json.loads(s) for s in stored), *more]:
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
    return total


def _rollout(row: sqlite3.Row) -> RolloutRecord:
    return RolloutRecord(
        id=row["id"],
        model=row["model"],
        version=row["version"],
        previous=row["previous"],
        state=row["state"],
        stage=row["stage"],
        stage_since=row["stage_since"],
        paused=bool(row["paused"]),
        inconclusive=bool(row["inconclusive"]),
        started_by=row["started_by"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        reason=row["reason"],
        policy=json.loads(row["policy"]),
    )

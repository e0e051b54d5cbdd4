"""The audit store's hash chain: rows appended in batches by several writers verify; a changed,
deleted or reordered row is named; a purge keeps the rest verifiable; inputs only as keyed digests."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.audit import AuditStore, keyed_digest
from runtime.audit.chain import HASH
from runtime.audit.store import OldFormat, Retention


def rows(n: int, start: int = 0, at: float = 1000.0) -> list[dict[str, Any]]:
    return [
        {"request_id": f"r{i}", "at": at + i, "version": "v1", "route": "production", "prediction": i % 2}
        for i in range(start, start + n)
    ]


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return AuditStore(tmp_path / "audit.sqlite")


def tamper(store: AuditStore, seq: int, edit: Callable[[list[bytes], list[bytes], int], Any]) -> None:
    """Edit the stored block that holds row ``seq`` behind the store's back: ``edit(lines, hashes,
    place)`` changes the rows' JSON lines and hashes in place (``place``: the row's index)."""
    db = sqlite3.connect(store.path)
    first, prev, hashes, body = db.execute(
        "SELECT first_seq, prev_hash, hashes, body FROM audit_blocks WHERE first_seq <= ? "
        "ORDER BY first_seq DESC LIMIT 1",
        (seq,),
    ).fetchone()
    lines = bytes(body).split(b"\n")
    digests = [bytes(hashes)[i : i + HASH] for i in range(0, len(hashes), HASH)]
    new_first = edit(lines, digests, seq - first)
    db.execute(
        "UPDATE audit_blocks SET first_seq = ?, rows = ?, prev_hash = ?, hashes = ?, body = ? WHERE first_seq = ?",
        (first if new_first is None else new_first, len(digests), prev, b"".join(digests), b"\n".join(lines), first),
    )
    db.commit()
    db.close()


def test_rows_from_two_writers_make_one_chain_that_verifies(store: AuditStore) -> None:
    other = AuditStore(store.path)  # another worker on the same file
    assert store.append(rows(3)) == 3
    assert other.append(rows(2, start=3)) == 5
    assert store.append(rows(1, start=5)) == 6
    assert store.verify() == []
    assert [r["request_id"] for r in store.query(since=1002, until=1005)] == ["r2", "r3", "r4"]
    assert store.query(request_id="r4")[0]["seq"] == 5
    assert [r["seq"] for r in store.query(after_seq=4, limit=1)] == [5]  # paging
    assert store.count() == 6
    other.close()


def test_an_edited_row_is_named(store: AuditStore) -> None:
    store.append(rows(5))

    def edit(lines: list[bytes], hashes: list[bytes], place: int) -> None:
        lines[place] = lines[place].replace(b'"prediction":0', b'"prediction":1')

    tamper(store, 3, edit)
    assert store.verify() == ["row 3: changed since it was written"]


def test_a_deleted_row_is_named(store: AuditStore) -> None:
    store.append(rows(5))

    def drop(lines: list[bytes], hashes: list[bytes], place: int) -> None:
        del lines[place]  # the row's JSON, not its hash

    tamper(store, 2, drop)
    assert store.verify() == ["row 2 missing (deleted)"]


def test_a_deleted_row_and_its_hash_are_named_where_the_chain_breaks(store: AuditStore) -> None:
    store.append(rows(5))
    store.append(rows(2, start=5))

    def drop(lines: list[bytes], hashes: list[bytes], place: int) -> None:
        lines.pop(place)
        hashes.pop(place)

    tamper(store, 2, drop)
    assert store.verify() == ["row 2: changed since it was written", "row 5 missing (deleted)"]


def test_a_deleted_block_is_named_by_its_rows(store: AuditStore) -> None:
    store.append(rows(3))
    store.append(rows(2, start=3))
    store.append(rows(2, start=5))
    db = sqlite3.connect(store.path)
    db.execute("DELETE FROM audit_blocks WHERE first_seq = 4")
    db.commit()
    db.close()
    problems = store.verify()
    assert problems[0] == "row 4-5 missing (deleted)"
    assert problems[1].startswith("row 6: does not follow the row before it")


def test_reordered_rows_are_named(store: AuditStore) -> None:
    store.append(rows(4))

    def swap(lines: list[bytes], hashes: list[bytes], place: int) -> None:
        lines[place], lines[place + 1] = lines[place + 1], lines[place]

    tamper(store, 2, swap)
    assert store.verify() == ["row 2: changed since it was written", "row 3: changed since it was written"]


def test_a_purge_keeps_the_rest_verifiable_and_a_deletion_after_it_is_still_seen(store: AuditStore) -> None:
    store.append(rows(10))
    assert store.purge_before(1004.0, batch=3) == 3  # bounded batches, oldest first
    assert store.purge_before(1004.0) == 1
    assert store.purge_before(1004.0) == 0
    assert store.count() == 6
    assert [r["seq"] for r in store.query(limit=2)] == [5, 6]
    assert store.query(request_id="r2") == []  # its index entry went with it
    assert store.verify() == []
    store.append(rows(1, start=10))
    assert store.verify() == []

    def drop_oldest(lines: list[bytes], hashes: list[bytes], place: int) -> int:  # as a purge would, minus the anchor
        del lines[0], hashes[0]
        return 6

    tamper(store, 5, drop_oldest)
    problems = store.verify()
    assert problems == ["row 5 missing (deleted)", "row 6: changed since it was written"]


def test_a_purge_stops_at_the_first_row_it_must_keep(store: AuditStore) -> None:
    store.append([*rows(2, at=1000.0), *rows(1, start=2, at=2000.0), *rows(2, start=3, at=1000.0)])
    assert store.purge_before(1500.0) == 2  # rows 4 and 5 are old too, but after one that is not
    assert [r["request_id"] for r in store.query()] == ["r2", "r3", "r4"]
    assert store.verify() == []


def test_inputs_are_stored_only_as_keyed_digests() -> None:
    x = {"input": np.array([[120.5, 1.0, 3.0]], np.float32)}
    same = {"input": np.array([[120.5, 1.0, 3.0]], np.float32)}
    key = b"k" * 32
    assert keyed_digest(x, key) == keyed_digest(same, key)
    assert keyed_digest(x, key) != keyed_digest(x, b"another key, another digest....")
    assert keyed_digest(x, key) != keyed_digest({"input": np.array([[120.6, 1.0, 3.0]], np.float32)}, key)
    with pytest.raises(ValueError, match="an audit key is needed"):
        keyed_digest(x, b"")


def test_rows_are_found_by_kind_and_by_decision(store: AuditStore) -> None:
    store.append(
        [
            {**rows(1)[0], "kind": "prediction", "answers": [{"decision": "approve"}, {"decision": "decline"}]},
            {**rows(1, 1)[0], "kind": "prediction", "answers": [{"decision": "review"}]},
            {**rows(1, 2)[0], "kind": "shadow"},
        ]
    )
    assert [r["request_id"] for r in store.query(decision="decline")] == ["r0"]
    assert [r["request_id"] for r in store.query(decision="review")] == ["r1"]
    assert [r["request_id"] for r in store.query(kind="shadow")] == ["r2"]
    assert store.query(decision="approve", kind="shadow") == []


def test_retention_purges_each_kind_in_bounded_batches_and_the_chain_still_verifies(store: AuditStore) -> None:
    day = 86_400.0
    now = 100 * day
    store.append(rows(30, at=now - 10 * day))  # rows 1-30: ten days old
    store.append(rows(5, start=30, at=now - 60))  # rows 31-35: a minute old
    store.append([{"kind": "payload", "request_id": f"p{i}", "at": now - i * day} for i in range(10)])
    retention = Retention(metadata_s=7 * day, payloads_s=3 * day, feedback_s=None)
    assert store.purge_expired(retention, now, batch=7) == {"metadata": 30, "payloads": 6}
    assert store.count() == 5
    assert [p["request_id"] for p in store.payloads()] == ["p0", "p1", "p2", "p3"]
    assert store.verify() == []
    assert store.purge_expired(retention, now) == {"metadata": 0, "payloads": 0}


def test_predictions_are_counted_per_block_and_by_row_where_a_block_straddles_the_start(store: AuditStore) -> None:
    def made(n: int, start: int, at: float, version: str, kind: str = "prediction") -> list[dict[str, Any]]:
        return [{**row, "service": "fraud", "version": version, "kind": kind} for row in rows(n, start, at)]

    store.append(made(10, 0, 1000.0, "v1"))  # times 1000-1009: straddles 1005
    store.append([*made(4, 10, 2000.0, "v1"), *made(3, 14, 2000.0, "v2"), *made(2, 17, 2000.0, "v2", "shadow")])
    assert store.predictions(1005.0) == {("fraud", "v1"): 5 + 4, ("fraud", "v2"): 3}
    assert store.predictions(0.0) == {("fraud", "v1"): 14, ("fraud", "v2"): 3}
    assert store.predictions(3000.0) == {}


def test_a_file_in_the_earlier_format_is_refused_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY, prev_hash TEXT, hash TEXT, row TEXT)")
    db.commit()
    db.close()
    with pytest.raises(OldFormat, match="earlier format"):
        AuditStore(path)
    db = sqlite3.connect(path)
    assert [name for (name,) in db.execute("SELECT name FROM sqlite_master")] == ["audit"]  # left as it was
    db.close()

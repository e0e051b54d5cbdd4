"""A request's record: the ids Ballast gives requests that bring none sort by time and do not repeat."""

from __future__ import annotations

import re
import time

from runtime.core.record import new_request_id


def test_new_request_ids_are_time_ordered_and_unique() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_request_id() for _ in range(10_000)]
    after = time.time_ns() // 1_000_000
    assert all(re.fullmatch(r"[0-9a-f]{28}", i) for i in ids)  # what X-Request-ID accepts back
    assert len(set(ids)) == len(ids)
    stamps = [int(i[:12], 16) for i in ids]
    assert stamps == sorted(stamps)
    assert before <= stamps[0] <= stamps[-1] <= after

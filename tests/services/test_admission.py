"""Admission: refuse a request that already waited too long inside the server."""

from __future__ import annotations

import asyncio

from services.admission import RECEIVED, Admission, mark_received


async def test_a_request_that_waited_too_long_is_refused() -> None:
    now = asyncio.get_running_loop().time()
    late: dict[str, object] = {}
    mark_received(late, now - 0.2)
    fresh: dict[str, object] = {"extensions": {"other": 1}}
    mark_received(fresh, now)
    assert late["extensions"] == {RECEIVED: now - 0.2}
    assert Admission(0.1).refuses(late)
    assert not Admission(0.1).refuses(fresh)
    assert not Admission(0.0).refuses(late)  # off
    assert not Admission(0.1).refuses({})  # no stamp (not served by Ballast's protocol)

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


async def test_a_late_request_opens_a_short_window_in_which_the_door_refuses_prediction_routes() -> None:
    loop = asyncio.get_running_loop()
    admission = Admission(0.1)
    admission.guard(["/score"])
    refused: list[str] = []
    admission.on_refused = refused.append
    now = loop.time()
    assert not admission.refuses_at_door(b"/score", now)  # closed until a request is late
    stalled: dict[str, object] = {}
    mark_received(stalled, now - 0.19)
    assert admission.refuses(stalled)  # refused itself ...
    assert not admission.refuses_at_door(b"/score", loop.time())  # ... but a stall is not a backlog
    slightly_behind: dict[str, object] = {}
    mark_received(slightly_behind, loop.time() - 0.205)
    assert admission.refuses(slightly_behind)
    assert admission.refuses_at_door(b"/score", loop.time())
    assert not admission.refuses_at_door(b"/score", loop.time() + 0.01)  # a little behind: a short window
    late: dict[str, object] = {}
    mark_received(late, loop.time() - 0.3)
    assert admission.refuses(late)
    opened = loop.time()
    assert admission.refuses_at_door(b"/score", opened)
    assert not admission.refuses_at_door(b"/livez", opened)  # health, metrics, admin: never at the door
    assert not admission.refuses_at_door(b"/score", opened + admission.window_s + 1e-3)  # closes by itself
    assert refused == ["/score", "/score"]
    fresh: dict[str, object] = {}
    mark_received(fresh, loop.time())
    assert not Admission(0.1).refuses(fresh)

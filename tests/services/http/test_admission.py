"""Admission: refuse a request that already waited too long inside the server."""

from __future__ import annotations

import asyncio

from services.http.admission import RECEIVED, Admission, mark_received


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
    refused: list[tuple[str, str]] = []
    admission.on_refused = lambda path, reason: refused.append((path, reason))
    now = loop.time()
    assert not admission.refuses_at_door(b"/score", now, 0)  # closed until a request is late
    stalled: dict[str, object] = {}
    mark_received(stalled, now - 0.19)
    assert admission.refuses(stalled)  # refused itself ...
    assert not admission.refuses_at_door(b"/score", loop.time(), 0)  # ... but a stall is not a backlog
    slightly_behind: dict[str, object] = {}
    mark_received(slightly_behind, loop.time() - 0.205)
    assert admission.refuses(slightly_behind)
    assert admission.refuses_at_door(b"/score", loop.time(), 0)
    assert not admission.refuses_at_door(b"/score", loop.time() + 0.01, 0)  # a little behind: a short window
    late: dict[str, object] = {}
    mark_received(late, loop.time() - 0.3)
    assert admission.refuses(late)
    opened = loop.time()
    assert admission.refuses_at_door(b"/score", opened, 0)
    assert not admission.refuses_at_door(b"/livez", opened, 0)  # health, metrics, admin: never at the door
    assert not admission.refuses_at_door(b"/score", opened + admission.window_s + 1e-3, 0)  # closes by itself
    assert refused == [("/score", "server_behind")] * 2
    fresh: dict[str, object] = {}
    mark_received(fresh, loop.time())
    assert not Admission(0.1).refuses(fresh)


def test_the_door_refuses_prediction_routes_while_the_worker_is_full() -> None:
    admission = Admission(0.0, max_inflight=3)  # wait-based shedding off: the cap works alone
    admission.guard(["/score"])
    refused: list[tuple[str, str]] = []
    admission.on_refused = lambda path, reason: refused.append((path, reason))
    assert admission.refuses_at_door(b"/score", 0.0, 2) is None
    assert admission.refuses_at_door(b"/score", 0.0, 3) == "server_full"
    assert admission.refuses_at_door(b"/score", 0.0, 50) == "server_full"
    assert admission.refuses_at_door(b"/livez", 0.0, 50) is None  # health is never capped
    assert Admission(0.0, max_inflight=0).refuses_at_door(b"/score", 0.0, 10**6) is None  # 0: no cap
    assert refused == [("/score", "server_full")] * 2


def test_the_door_refuses_a_mounted_protocols_inference_paths_for_any_model_and_version() -> None:
    admission = Admission(0.0, max_inflight=1)
    admission.guard(["/score"], under=("/v2/", "/infer", "/v2/models/{model}/infer"))
    refused: list[str] = []
    admission.on_refused = lambda path, reason: refused.append(path)
    for path in (b"/score", b"/v2/models/digits-mlp/infer", b"/v2/models/any/versions/7/infer"):
        assert admission.refuses_at_door(path, 0.0, 1) == "server_full", path
    assert refused == ["/score", "/v2/models/{model}/infer", "/v2/models/{model}/infer"]  # bounded labels
    for path in (b"/v2/models/digits-mlp", b"/v2/models/digits-mlp/ready", b"/v2/health/ready", b"/infer", b"/metrics"):
        assert admission.refuses_at_door(path, 0.0, 1) is None, path  # metadata and health: never at the door
    assert admission.refuses_at_door(b"/v2/models/digits-mlp/infer", 0.0, 0) is None  # room: admitted

"""The read deadline and the refusal at the door, on a real uvicorn server (in a thread) speaking
real sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import uvicorn

from services.http.admission import RECEIVED, Admission
from services.http.protocol import GuardedHttpToolsProtocol

TIMEOUT_S = 0.5


class Door:
    """An app as the protocol finds a front door: its admission and read timeout beside the app
    (uvicorn wraps it in middleware; the protocol finds them through it)."""

    def __init__(self) -> None:
        self.admission = Admission(0.0)
        self.read_timeout_s = TIMEOUT_S

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await echo(scope, receive, send)


APP = Door()


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
    waited = asyncio.get_running_loop().time() - scope["extensions"][RECEIVED]  # stamped by the protocol
    headers = [(b"content-length", b"%d" % len(body)), (b"x-waited-ms", b"%.3f" % (waited * 1000))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    config = uvicorn.Config(APP, host="127.0.0.1", port=0, http=GuardedHttpToolsProtocol, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(5)


def _until_closed(sock: socket.socket) -> tuple[float, bytes]:
    started, data = time.monotonic(), b""
    sock.settimeout(5)
    while chunk := sock.recv(4096):
        data += chunk
    return time.monotonic() - started, data


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"POST /x HTTP/1.1\r\nHost: a\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\ncontent-length: 10\r\n\r\n12345",
    ],
    ids=["nothing", "half-the-headers", "half-the-body"],
)
def test_a_stalled_request_gets_408_and_is_closed(port: int, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(sent)
        waited, data = _until_closed(sock)
    assert TIMEOUT_S * 0.8 <= waited <= TIMEOUT_S + 1.0
    assert data.startswith(b"HTTP/1.1 408 ")
    assert b'"type":"request_timeout"' in data


def test_requests_that_arrive_in_time_are_served_on_a_kept_alive_connection(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(5)
        for _ in range(3):  # each request gets its own deadline: together they take longer than one
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\ncontent-length: 4\r\n\r\nab")
            time.sleep(TIMEOUT_S * 0.6)
            sock.sendall(b"cd")
            answer = sock.recv(4096)
            assert answer.endswith(b"\r\n\r\nabcd")
            assert b"x-waited-ms: " in answer  # each request is stamped when its headers are read


def _answer(sock: socket.socket) -> bytes:
    """One HTTP answer with a content-length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def door() -> Iterator[Admission]:
    gate = Admission(0.1, retry_after_s=2)
    gate.guard(["/predict"])
    APP.admission = gate
    yield gate
    APP.admission = Admission(0.0)


def test_while_the_window_is_open_prediction_requests_are_refused_without_reaching_the_app(
    port: int, door: Admission, caplog: pytest.LogCaptureFixture
) -> None:
    door._shed_until = float("inf")  # as after a late request (the window's own rule: test_admission.py)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(5)
        sock.sendall(b"POST /predict?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 4\r\n\r\nab")
        refused = _answer(sock)  # answered before the body is complete
        assert refused.startswith(b"HTTP/1.1 503 ")
        assert b"retry-after: 2\r\n" in refused
        message = "service overloaded (server_behind), retry later"
        assert orjson.loads(refused.partition(b"\r\n\r\n")[2]) == {
            "error": {"type": "overloaded", "message": message, "request_id": None}
        }
        sock.sendall(b"cd")  # the rest of the refused body is read and dropped
        sock.sendall(b"POST /other HTTP/1.1\r\nHost: a\r\ncontent-length: 2\r\n\r\nok")  # not guarded
        assert _answer(sock).endswith(b"\r\n\r\nok")
        door._shed_until = 0.0  # the window closes: the same connection is served again
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: a\r\ncontent-length: 2\r\n\r\nhi")
        assert _answer(sock).endswith(b"\r\n\r\nhi")
    with socket.create_connection(("127.0.0.1", port)) as sock:  # a client that asked to close
        door._shed_until = float("inf")
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: a\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi")
        _, data = _until_closed(sock)
        assert data.startswith(b"HTTP/1.1 503 ")
        assert b"connection: close\r\n" in data
    with socket.create_connection(("127.0.0.1", port)) as sock:  # it waits for "100 Continue": never
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: a\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n")
        waited, data = _until_closed(sock)
        assert data.startswith(b"HTTP/1.1 503 ")
        assert waited < TIMEOUT_S  # closed at once, not by the read deadline
    time.sleep(0.1)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_while_the_worker_is_full_prediction_requests_are_refused_at_the_door(port: int) -> None:
    gate = Admission(0.0, retry_after_s=1, max_inflight=2)  # the cap alone, no wait-based shedding
    gate.guard(["/predict"])
    APP.admission = gate
    try:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        for sock in held:  # each request is inside the app, waiting for the rest of its body
            sock.settimeout(5)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: a\r\ncontent-length: 4\r\n\r\nab")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(5)
            time.sleep(0.05)  # both held requests have started (well within the 0.5 s read deadline)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: a\r\ncontent-length: 2\r\n\r\nhi")
            refused = _answer(sock)
            assert refused.startswith(b"HTTP/1.1 503 ")
            assert b"retry-after: 1\r\n" in refused
            assert orjson.loads(refused.partition(b"\r\n\r\n")[2])["error"]["message"] == (
                "service overloaded (server_full), retry later"
            )
            sock.sendall(b"POST /other HTTP/1.1\r\nHost: a\r\ncontent-length: 2\r\n\r\nok")  # not guarded
            assert _answer(sock).endswith(b"\r\n\r\nok")
            assert gate.inflight == 2  # refused requests never count
            held[0].sendall(b"cd")  # one held request finishes ...
            assert _answer(held[0]).endswith(b"\r\n\r\nabcd")
            held[1].close()  # ... the other's client leaves
            time.sleep(0.05)
            assert gate.inflight == 0
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: a\r\ncontent-length: 2\r\n\r\nhi")
            assert _answer(sock).endswith(b"\r\n\r\nhi")  # there is room again
            held[0].close()
    finally:
        APP.admission = Admission(0.0)

"""deploy/nginx.conf.template: a real nginx in front of a real uvicorn server, over real sockets.

The upstream holds its prediction requests until the test lets them go, so that the limit on
requests in flight is reached for certain."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn

from services.http.nginx import render

LIMIT = 2


class Upstream:
    """``POST /predict`` waits until :meth:`release`; ``POST /busy`` is the worker's own 503;
    ``GET /livez`` answers at once."""

    def __init__(self) -> None:
        self.entered = 0
        self.gate: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        status, headers, body = 200, [(b"content-type", b"application/json")], b'{"ok":true}'
        if scope["path"] == "/predict":
            self.entered += 1
            if self.gate is None:
                self.loop, self.gate = asyncio.get_running_loop(), asyncio.Event()
            await self.gate.wait()
        elif scope["path"] == "/busy":
            status, body = 503, b'{"error":{"type":"overloaded","message":"from the worker"}}'
            headers.append((b"retry-after", b"7"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def release(self) -> None:
        if self.loop is not None and self.gate is not None:
            self.loop.call_soon_threadsafe(self.gate.set)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, int]]:
    app = Upstream()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield app, server.servers[0].sockets[0].getsockname()[1]
    app.release()
    server.should_exit = True
    thread.join(5)


@contextlib.contextmanager
def running_nginx(upstream_port: int, tmp_path: Path) -> Iterator[str]:
    """nginx from the template in front of ``upstream_port``, until the block ends; yields its URL."""
    binary = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    assert binary, "nginx is needed (make test installs it: apt-get install nginx-light)"
    port = _free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        render(
            {
                "LISTEN": f"127.0.0.1:{port}",
                "UPSTREAM": f"127.0.0.1:{upstream_port}",
                "MAX_INFLIGHT": str(LIMIT),
                "PREFIX": str(tmp_path),
                "MAX_BODY": "1024",
                "ACCESS_LOG": f"{tmp_path}/access.log ballast",
            }
        )
    )
    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(tmp_path)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "nginx exited: " + (tmp_path / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def nginx(upstream: tuple[Upstream, int], tmp_path: Path) -> Iterator[str]:
    with running_nginx(upstream[1], tmp_path) as url:
        yield url


def _post(url: str, body: bytes = b"{}") -> tuple[int, Message, bytes]:
    """Status, headers (case-insensitive) and body of a POST."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_requests_beyond_the_limit_get_a_503_with_retry_after_and_health_still_passes(
    nginx: str, upstream: tuple[Upstream, int]
) -> None:
    app, _ = upstream
    with ThreadPoolExecutor(LIMIT) as pool:
        held = [pool.submit(_post, f"{nginx}/predict") for _ in range(LIMIT)]
        deadline = time.monotonic() + 5
        while app.entered < LIMIT:
            assert time.monotonic() < deadline, "the held requests did not reach the upstream"
            time.sleep(0.01)
        status, headers, body = _post(f"{nginx}/predict")
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert headers["Content-Type"] == "application/json"
        error = orjson.loads(body)["error"]
        assert error["type"] == "overloaded"
        assert "proxy_busy" in error["message"]
        assert app.entered == LIMIT  # refused by nginx: the worker never saw it
        with urllib.request.urlopen(f"{nginx}/livez", timeout=5) as response:  # health is not limited
            assert response.status == 200
        app.release()
        assert [f.result()[0] for f in held] == [200] * LIMIT
    assert _post(f"{nginx}/predict")[0] == 200  # room again


def test_the_workers_own_refusals_and_limits_pass_through(nginx: str) -> None:
    status, headers, body = _post(f"{nginx}/busy")
    assert status == 503
    assert headers["Retry-After"] == "7"  # not replaced by the proxy's
    assert orjson.loads(body)["error"]["message"] == "from the worker"
    status, headers, body = _post(f"{nginx}/predict", b"x" * 2048)  # over MAX_BODY: before the worker
    assert (status, headers["Content-Type"]) == (413, "application/json")
    assert orjson.loads(body)["error"] == {
        "type": "payload_too_large",
        "message": "the body exceeds 1024 bytes",
        "request_id": None,
    }


def test_an_unreachable_worker_is_a_json_503_with_retry_after(tmp_path: Path) -> None:
    with running_nginx(_free_port(), tmp_path) as url:  # nothing listens there
        status, headers, body = _post(f"{url}/predict")
    assert (status, headers["Retry-After"]) == (503, "1")
    assert orjson.loads(body)["error"]["type"] == "unavailable"

"""Clients that stall in their headers or body are cut off in bounded time and do not slow the
others down (real server, real sockets)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np

from models import fraud

TXN = fraud.generate(1, seed=2)[0][0]
READ_TIMEOUT_S = 1.0
STALLED = 60


def p95_ms(client: httpx.Client, url: str, n: int = 150) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        assert client.post(f"{url}/score", json=TXN).status_code == 200
        times.append(time.perf_counter() - started)
    return float(np.percentile(times, 95) * 1000)


def test_stalled_connections_are_closed_and_others_keep_their_latency(serve: Callable[..., Any]) -> None:
    with serve("services.fraud:Fraud", BALLAST_READ_TIMEOUT_S=str(READ_TIMEOUT_S)) as url:
        address = urlparse(url)
        host, port = address.hostname or "", address.port or 0
        with httpx.Client(timeout=10) as client:
            p95_ms(client, url, 50)  # warm
            baseline = p95_ms(client, url)
            partial = [
                b"POST /score HTTP/1.1\r\nHost: a\r\nContent-Ty",
                b"POST /score HTTP/1.1\r\nHost: a\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{",
            ]
            results: list[tuple[float, bytes]] = []

            def stall(data: bytes) -> None:
                with socket.create_connection((host, port)) as sock:
                    sock.sendall(data)
                    started, received = time.monotonic(), b""
                    sock.settimeout(READ_TIMEOUT_S + 10)
                    while chunk := sock.recv(4096):
                        received += chunk
                    results.append((time.monotonic() - started, received))

            threads = [threading.Thread(target=stall, args=(partial[i % 2],)) for i in range(STALLED)]
            for thread in threads:
                thread.start()
            time.sleep(0.1)
            loaded = p95_ms(client, url)
            for thread in threads:
                thread.join()
            assert httpx.get(f"{url}/livez").status_code == 200
    assert len(results) == STALLED
    assert max(t for t, _ in results) < READ_TIMEOUT_S + 2.0
    assert all(r.startswith(b"HTTP/1.1 408 ") for _, r in results)
    assert loaded <= max(3 * baseline, baseline + 20), (baseline, loaded)

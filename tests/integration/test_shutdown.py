"""SIGTERM to a real `bentoml serve` with requests in flight: they finish, readiness turns 503
first, newcomers get 503 until the process exits."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx

from models import fraud

TOKEN = "drain-admin-token-0123"
TXN = fraud.generate(8, seed=4)[0]
DRAIN_S = 1.5


async def test_sigterm_drains_then_exits(serve: Callable[..., Any]) -> None:
    with serve("services.fraud:Fraud", BALLAST_ADMIN_TOKEN=TOKEN, BALLAST_DRAIN_S=str(DRAIN_S)) as url:
        async with httpx.AsyncClient(timeout=10) as client:
            slow = {"slow_rate": 1.0, "slow_ms": 300}  # every primary call takes 300 ms: requests stay in flight
            r = await client.post(f"{url}/admin/faults", json=slow, headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200
            in_flight = [asyncio.create_task(client.post(f"{url}/score", json=t)) for t in TXN]
            await asyncio.sleep(0.1)
            signalled = time.monotonic()
            os.kill(url.process.pid, signal.SIGTERM)  # the arbiter only, as `docker stop` would
            seen: list[tuple[float, str, int | str]] = []
            while time.monotonic() - signalled < DRAIN_S + 20 and url.process.poll() is None:
                async with httpx.AsyncClient(timeout=5) as fresh:  # a new connection each time
                    for method, path in (("GET", "/readyz"), ("POST", "/score")):
                        at = time.monotonic() - signalled
                        try:
                            response = await fresh.request(method, f"{url}{path}", json=TXN[0])
                            seen.append((at, path, response.status_code))
                            if response.status_code == 503:
                                assert int(response.headers["retry-after"]) >= 1
                        except httpx.TransportError as exc:
                            seen.append((at, path, type(exc).__name__))
                await asyncio.sleep(0.05)
            answers = await asyncio.gather(*in_flight)
        exited = time.monotonic() - signalled
    assert [a.status_code for a in answers] == [200] * len(TXN)
    assert {a.json()["served_by"] for a in answers} == {"fraud-gbt"}
    statuses = [s for _, _, s in seen]
    assert statuses[:2] == [503, 503], seen  # readiness and new requests, at once
    failed = [i for i, s in enumerate(statuses) if not isinstance(s, int)]
    answered = statuses[: failed[0]] if failed else statuses
    assert set(answered) == {503}, seen
    # 503s for the whole drain (the last one seen is at most one poll, ~0.2 s, before its end), then the exit
    assert seen[len(answered) - 1][0] >= DRAIN_S - 0.3, seen
    assert all(not isinstance(s, int) for s in statuses[len(answered) :]), seen  # no answers after the end
    assert exited < DRAIN_S + 15

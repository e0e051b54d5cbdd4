"""The chain under fault injection, against real servers (BALLAST_FAULT_* set at start)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from sklearn.datasets import load_digits

from models import fraud

TXN = fraud.generate(40, seed=5)[0]


def test_a_failing_primary_is_replaced_by_the_fallback_then_cut_off(serve: Callable[..., Any]) -> None:
    with serve(
        "services.fraud:Fraud", BALLAST_FAULT_ERROR_RATE="1", BALLAST_BREAKER_MIN_CALLS="5", BALLAST_BREAKER_WINDOW="10"
    ) as url:
        bodies = [httpx.post(f"{url}/score", json=t, timeout=10).json() for t in TXN[:20]]
        assert {(b["served_by"], b["degraded"]) for b in bodies} == {("fraud-logreg", True)}
        metrics = httpx.get(f"{url}/metrics").text
        assert 'ballast_breaker_state{model="fraud-gbt"} 2.0' in metrics
        assert (
            'ballast_fallbacks_total{from_stage="fraud-gbt",pipeline="fraud",reason="circuit_open",'
            'to_stage="fraud-logreg"}'
        ) in metrics
        assert 'ballast_requests_total{outcome="fallback",pipeline="fraud"} 20.0' in metrics


def test_a_slow_primary_is_answered_in_time_by_the_fallback(serve: Callable[..., Any]) -> None:
    image = load_digits().images[0].tolist()
    with serve(
        "services.digits:Digits",
        BALLAST_FAULT_SLOW_RATE="1",
        BALLAST_FAULT_SLOW_MS="2000",
        BALLAST_REQUEST_TIMEOUT_MS="600",
        BALLAST_FALLBACK_RESERVE_MS="200",
    ) as url:
        started = time.monotonic()
        response = httpx.post(f"{url}/classify", json={"images": [image]}, timeout=10)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    body = response.json()
    assert (body["served_by"], body["degraded"]) == ("digits-mlp-small", True)
    assert body["results"][0]["label"] == 0
    assert elapsed < 0.6 + 0.2, f"answered after {elapsed:.2f} s"


def test_without_a_rule_stage_no_time_left_is_504(digits_url: str) -> None:
    image = load_digits().images[0].tolist()
    response = httpx.post(
        f"{digits_url}/classify", json={"images": [image]}, headers={"X-Request-Timeout-Ms": "0.001"}, timeout=10
    )
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "deadline_exceeded"


async def test_a_full_queue_answers_503_with_retry_after(serve: Callable[..., Any]) -> None:
    image = load_digits().images[0].tolist()
    with serve(
        "services.digits:Digits",
        BALLAST_FAULT_SLOW_RATE="1",
        BALLAST_FAULT_SLOW_MS="300",
        BALLAST_MAX_BATCH_SIZE="1",
        BALLAST_MAX_QUEUE_ROWS="1",
    ) as url:
        async with httpx.AsyncClient(timeout=10) as client:
            responses = await asyncio.gather(
                *(client.post(f"{url}/classify", json={"images": [image]}) for _ in range(12))
            )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 503}
    refused = [r for r in responses if r.status_code == 503]
    assert refused, statuses
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert all(r.json()["error"]["type"] == "overloaded" for r in refused)
    assert statuses.count(200) >= 1

"""Drift on a real fraud server: stationary traffic leaves a decided window with nothing confirmed;
traffic with amounts four times larger is confirmed within two windows on ``amount``, in
``GET /v1/drift`` and in ``/metrics``; a request for the report with drift off is a 404."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from models import fraud
from services.cli import main

WINDOW = 200


def send(url: str, transactions: list[dict[str, Any]]) -> None:
    for start in range(0, len(transactions), 25):
        answer = httpx.post(f"{url}/score_batch", json={"transactions": transactions[start : start + 25]}, timeout=10)
        assert answer.status_code == 200, answer.text


def reports(url: str, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The input windows judged so far, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = httpx.get(f"{url}/v1/drift", timeout=10).json()
        windows = [r for r in found["reports"] if r["source"] == "input"]
        if (windows and seen(url) >= count) or time.monotonic() > deadline:
            return windows
        time.sleep(0.2)


def seen(url: str) -> float:
    """Input windows closed, from /metrics."""
    return seen_in(httpx.get(f"{url}/metrics", timeout=10).text)


def test_a_shift_in_amounts_is_confirmed_on_amount_and_shown_in_the_report_and_metrics(
    serve: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"BALLAST_DRIFT_WINDOW_ROWS": str(WINDOW), "BALLAST_DRIFT_MIN_ROWS": "100"}
    steady, _ = fraud.generate(WINDOW, seed=5)
    moved, _ = fraud.generate(2 * WINDOW, seed=6)
    for t in moved:
        t["amount"] = min(round(t["amount"] * 4, 2), 50_000.0)
    with serve("services.fraud:Fraud", **env) as url:
        send(url, steady)
        [first] = reports(url, 1)
        assert first["decided"] is True
        assert first["rows"] == WINDOW
        assert first["confirmed"] == []
        assert {f["name"] for f in first["features"]} >= {"amount", "currency", "hour"}
        send(url, moved)
        [latest] = reports(url, 3)
        text = httpx.get(f"{url}/metrics", timeout=10).text
        assert main(["--url", str(url), "drift"]) == 0
        printed = capsys.readouterr().out
        predictions = [
            r for r in httpx.get(f"{url}/v1/drift", timeout=10).json()["reports"] if r["source"] == "prediction"
        ]
    assert seen_in(text) == 3
    assert "amount" in latest["confirmed"]
    [amount] = [f for f in latest["features"] if f["name"] == "amount"]
    assert amount["drifted"] is True
    assert amount["direction"] == "up"
    assert amount["distance"] > amount["threshold"]
    confirmed = r'^ballast_drift_confirmed\{feature="amount",pipeline="fraud",source="input",version="(\w+)"\} 1\.0$'
    found = re.search(confirmed, text, re.M)
    assert found is not None
    assert found.group(1) == latest["version"] != "latest"  # the stored version, as the request metrics say
    assert re.search(r"^  amount .* CONFIRMED$", printed, re.M)  # ballast drift, for a person
    assert "input: window of 200 rows" in printed
    assert predictions  # the primary's outputs are watched too
    assert {f["name"] for f in predictions[0]["features"]} == {"label", "probabilities[0]", "probabilities[1]"}


def seen_in(text: str) -> float:
    return sum(
        float(v) for v in re.findall(r'^ballast_drift_windows_total\{[^}]*source="input"[^}]*\} (\S+)$', text, re.M)
    )


def test_the_report_is_a_404_when_drift_is_off(serve: Callable[..., Any]) -> None:
    with serve("services.fraud:Fraud", BALLAST_DRIFT_ENABLED="false") as url:
        answer = httpx.get(f"{url}/v1/drift", timeout=10)
        assert main(["--url", str(url), "drift"]) == 1
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "not_found"

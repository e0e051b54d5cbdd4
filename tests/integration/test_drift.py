"""Drift on a real fraud server: stationary traffic leaves a decided window with nothing confirmed;
traffic with amounts four times larger is confirmed within two windows on ``amount``, in
``GET /v1/drift`` and in ``/metrics``; labelled feedback says "not enough labels", then the drop that
10 % of flipped labels make; a request for the report with drift off is a 404."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from models import fraud
from runtime.audit import AuditStore
from services.cli import main
from tests.integration.test_audit import KEY, wait_for_rows
from tests.integration.test_rollouts import pinned

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


@pytest.fixture(scope="module")
def primary(bentoml_home: Path) -> str:
    """The newest fraud-gbt version that the build made as the primary (with held-out figures);
    other tests store versions without them."""
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    script = (
        "import bentoml\n"
        "built = [m for m in bentoml.models.list('fraud-gbt') if m.info.metadata.get('role') == 'primary']\n"
        "print(max(built, key=lambda m: m.info.creation_time).tag.version)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def test_labelled_performance_says_not_enough_labels_then_the_drop_of_flipped_labels(
    serve: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], primary: str
) -> None:
    env = {
        **pinned(tmp_path / "lifecycle.sqlite", primary),
        "BALLAST_AUDIT_KEY": KEY,
        "BALLAST_AUDIT_PATH": str(tmp_path / "audit.sqlite"),
        "BALLAST_PERFORMANCE_MIN_LABELS": "300",
        "BALLAST_PERFORMANCE_MIN_PER_CLASS": "10",
    }
    transactions, labels = fraud.generate(1400, seed=41)
    flipped = labels.copy()
    flip = np.random.default_rng(41).random(len(labels)) < 0.1
    flipped[flip] = 1 - flipped[flip]
    with serve("services.fraud:Fraud", **env) as url:
        store = AuditStore(tmp_path / "audit.sqlite")
        batches = []
        for start in range(0, len(transactions), 25):  # 25 rows: small enough for the trail to keep the scores
            answer = httpx.post(
                f"{url}/score_batch", json={"transactions": transactions[start : start + 25]}, timeout=10
            )
            assert answer.status_code == 200, answer.text
            batches.append((answer.headers["x-request-id"], start))
        wait_for_rows(store, len(batches))

        def label(chosen: list[tuple[str, int]], outcomes: np.ndarray) -> None:
            sent = [{"request_id": rid, "label": [int(y) for y in outcomes[s : s + 25]]} for rid, s in chosen]
            answer = httpx.post(f"{url}/v1/feedback", json={"labels": sent}, timeout=30)
            assert answer.json()["accepted"] == len(chosen), answer.text

        label(batches[:8], labels)  # 200 true labels: fewer than 300
        [few] = httpx.get(f"{url}/v1/drift", timeout=10).json()["performance"]
        before = httpx.get(f"{url}/metrics", timeout=10).text
        label(batches[8:], flipped)  # 1,200 more, 10 % of them flipped
        [dropped] = httpx.get(f"{url}/v1/drift", timeout=10).json()["performance"]
        after = httpx.get(f"{url}/metrics", timeout=10).text
        assert main(["--url", str(url), "drift"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"performance on labelled feedback: DROPPED, 1400 labels$", printed, re.M)
    assert re.search(r"^  roc_auc .* dropped$", printed, re.M)
    assert few["standing"] == "not_enough_labels"
    assert few["labels"] == 200
    assert {f["figure"]: f["observed"] for f in few["figures"]} == {"roc_auc": None, "accuracy": None}
    assert gauge(before, "performance_drop") == 0
    assert gauge(before, "performance_enough_labels") == 0
    assert dropped["standing"] == "dropped"
    assert dropped["labels"] == 1400
    figures = {f["figure"]: f for f in dropped["figures"]}
    assert figures["roc_auc"]["standing"] == "dropped"
    assert figures["roc_auc"]["held_out"] - figures["roc_auc"]["observed"] >= 0.05
    assert dropped["estimate_unreliable"] is True  # the scores no longer promise what the labels show
    assert gauge(after, "performance_drop") == 1
    assert gauge(after, "performance_enough_labels") == 1
    assert re.search(r'^ballast_performance_figure\{figure="roc_auc",on="held_out",[^}]*\} 0\.8', after, re.M)


def gauge(text: str, name: str) -> float:
    found = re.search(rf'^ballast_{name}\{{pipeline="fraud",version="\w+"\}} (\S+)$', text, re.M)
    assert found is not None, name
    return float(found.group(1))


def test_a_window_closes_by_time_with_no_request_after_it(serve: Callable[..., Any]) -> None:
    env = {"BALLAST_DRIFT_WINDOW_ROWS": "1000", "BALLAST_DRIFT_MIN_ROWS": "50", "BALLAST_DRIFT_WINDOW_S": "2"}
    with serve("services.fraud:Fraud", **env) as url:
        time.sleep(2.5)  # the first (empty) window closes by time
        # one request: its rows land in one window whenever the window opened
        answer = httpx.post(f"{url}/score_batch", json={"transactions": fraud.generate(60, seed=7)[0]}, timeout=10)
        assert answer.status_code == 200, answer.text
        sent = time.monotonic()
        deadline = sent + 15
        found: list[dict[str, Any]] = []
        while not found and time.monotonic() < deadline:  # no request from here on
            time.sleep(0.2)
            found = [r for r in httpx.get(f"{url}/v1/drift", timeout=10).json()["reports"] if r["source"] == "input"]
            found = [r for r in found if r["rows"] == 60]
        waited = time.monotonic() - sent
    assert found, "no window of the 60 rows closed without traffic"
    assert found[0]["decided"] is True
    assert waited < 5  # the window's 2 s, and the tick's 1 s

"""The audit trail on a real server: one row per answered request, none for a refused one, a chain
that verifies, inputs only as keyed digests, and the writer's counters in /metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from models import fraud
from runtime.audit import AuditStore
from services.cli import main

TRANSACTIONS = fraud.generate(40, seed=29)[0]
KEY = "an-audit-key-for-the-test"


def wait_for_rows(store: AuditStore, rows: int, timeout_s: float = 10.0) -> None:
    """Until the writer has committed ``rows`` rows (it writes a fraction of a second after the
    answers), or ``timeout_s``; the callers assert the count."""
    deadline = time.monotonic() + timeout_s
    while store.count() < rows and time.monotonic() < deadline:
        time.sleep(0.1)


def test_every_answer_is_audited_and_the_chain_verifies(
    serve: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.sqlite"
    tokens = json.dumps(
        {
            "cy": {"token": "cy-auditor-token-0123456", "roles": ["auditor"]},
            "ana": {"token": "ana-operator-token-0123", "roles": ["operator"]},
        }
    )
    env = {"BALLAST_AUDIT_KEY": KEY, "BALLAST_AUDIT_PATH": str(path), "BALLAST_TOKENS": tokens}
    with serve("services.fraud:Fraud", **env) as url:
        ids = []
        for transaction in TRANSACTIONS[:30]:
            answer = httpx.post(f"{url}/score", json=transaction, timeout=10)
            assert answer.status_code == 200
            ids.append(answer.headers["x-request-id"])
        batch = httpx.post(f"{url}/score_batch", json={"transactions": TRANSACTIONS[30:]}, timeout=10)
        assert batch.status_code == 200
        refused = httpx.post(f"{url}/score", json={**TRANSACTIONS[0], "amount": -1}, timeout=10)
        assert refused.status_code == 422
        store = AuditStore(path)
        wait_for_rows(store, 31)
        text = httpx.get(f"{url}/metrics", timeout=10).text
        auditor = {"Authorization": "Bearer cy-auditor-token-0123456"}
        found = httpx.post(f"{url}/admin/audit/query", json={"request_id": ids[3]}, headers=auditor, timeout=10)
        assert [r["request_id"] for r in found.json()["rows"]] == [ids[3]]
        checked = httpx.post(f"{url}/admin/audit/verify", json={}, headers=auditor, timeout=10).json()
        assert checked == {"rows": 31, "problems": []}
        operator = {"Authorization": "Bearer ana-operator-token-0123"}
        assert httpx.post(f"{url}/admin/audit/verify", json={}, headers=operator, timeout=10).status_code == 403
        cli = ["--url", str(url), "--token", "cy-auditor-token-0123456", "audit"]
        assert main([*cli, "verify"]) == 0
        assert main([*cli, "export", "--route", "production"]) == 0
        exported = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        assert [r["seq"] for r in exported] == list(range(1, 32))  # every row, in order, as JSON Lines
        bad = httpx.post(f"{url}/admin/audit/query", json={"limit": 0, "route": "x"}, headers=auditor, timeout=10)
        assert bad.status_code == 422
        assert {f["path"] for f in bad.json()["error"]["fields"]} == {"limit", "route"}
    assert store.count() == 31  # 30 single answers and one batch; the 422 is not a prediction
    assert store.verify() == []
    first = store.query(request_id=ids[0])[0]
    assert (first["route"], first["model"], first["service"]) == ("production", "fraud-gbt", "fraud")
    assert len(first["input_hmac"]) == 64
    assert set(first["outputs"]) == {"label", "probabilities"}
    [batched] = [r for r in store.query(limit=100) if r["rows"] == 10]
    assert len(batched["outputs"]["label"]) == 10
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("audit.sqlite-*"))
    for transaction in TRANSACTIONS[:5]:  # no input value is stored
        assert repr(transaction["amount"]).encode() not in raw
    written = re.search(r'^ballast_audit_written_total\{pipeline="fraud"\} (\S+)$', text, re.M)
    assert written is not None
    assert float(written.group(1)) >= 30  # counted as the writer commits (the last batch may follow)


def test_a_stalled_audit_database_fails_closed_then_recovers(serve: Callable[..., Any], tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "audit.sqlite"
    env = {
        "BALLAST_AUDIT_KEY": KEY,
        "BALLAST_AUDIT_PATH": str(path),
        "BALLAST_AUDIT_OVERFLOW": "fail_closed",
        "BALLAST_AUDIT_MAX_QUEUE": "2",
    }
    with serve("services.fraud:Fraud", **env) as url:
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the database: writes stall
        statuses = [httpx.post(f"{url}/score", json=t, timeout=10) for t in TRANSACTIONS[:8]]
        refused = [r for r in statuses if r.status_code == 503]
        assert [r.status_code for r in statuses[:2]] == [200, 200]  # the queue takes two rows
        assert len(refused) == 6
        assert all(r.headers["retry-after"] and r.json()["error"]["type"] == "overloaded" for r in refused)
        lock.execute("ROLLBACK")  # the disk is back
        deadline = time.monotonic() + 15
        while httpx.post(f"{url}/score", json=TRANSACTIONS[9], timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the audit never caught up"
            time.sleep(0.2)
        lock.close()
        store = AuditStore(path)
        wait_for_rows(store, 3)
        text = httpx.get(f"{url}/metrics", timeout=10).text
    assert store.count() == 3  # the two before the stall and the one after: every answer has its row
    assert store.verify() == []
    assert "ballast_audit_dropped_total" not in text or 'reason="queue_full"' not in text


def writer_pids(path: Path) -> list[int]:
    """The live audit writer processes of the database at ``path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"runtime.audit.sink" in command and str(path).encode() in command:
            found.append(int(entry.name))
    return found


def test_a_killed_writer_process_is_replaced_and_every_answer_keeps_one_row(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "audit.sqlite"
    env = {"BALLAST_AUDIT_KEY": KEY, "BALLAST_AUDIT_PATH": str(path), "BALLAST_AUDIT_WRITER": "process"}
    killed: set[int] = set()
    ids = []
    with serve("services.fraud:Fraud", **env) as url:
        for chunk in range(4):
            for transaction in TRANSACTIONS[chunk * 10 : (chunk + 1) * 10]:
                answer = httpx.post(f"{url}/score", json=transaction, timeout=10)
                assert answer.status_code == 200
                ids.append(answer.headers["x-request-id"])
            if chunk == 3:
                break
            deadline = time.monotonic() + 15
            while not (live := [pid for pid in writer_pids(path) if pid not in killed]):
                assert time.monotonic() < deadline, "no writer process came back"
                time.sleep(0.05)
            [pid] = live
            os.kill(pid, signal.SIGKILL)  # with its batch in flight or not: either way nothing is lost
            killed.add(pid)
        store = AuditStore(path)
        wait_for_rows(store, 40, timeout_s=20)
        text = httpx.get(f"{url}/metrics", timeout=10).text
    assert len(killed) == 3
    assert sorted(r["request_id"] for r in store.query(limit=100)) == sorted(ids)  # each answer once
    assert store.verify() == []
    assert "ballast_audit_dropped_total{" not in text
    deadline = time.monotonic() + 10
    while writer_pids(path):  # its pipe closed with the server: it ends by itself
        assert time.monotonic() < deadline, "the writer process outlived its server"
        time.sleep(0.1)


PLANTED = {
    "card": "4111111111111111",
    "email": "planted.person@example.org",
    "phone": "+1 415 555 0100",
    "card_in_text": "5500 0055 5555 5559",
}


def test_planted_personal_data_is_nowhere_and_rows_say_who_asked_and_what_held(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "audit.sqlite"
    admin = "an-admin-token-0123456789"
    env = {
        "BALLAST_AUDIT_KEY": KEY,
        "BALLAST_AUDIT_PATH": str(path),
        "BALLAST_AUDIT_PAYLOAD_SHARE": "1.0",
        "BALLAST_API_KEYS": json.dumps({"checkout": "checkout-key-0123456789"}),
        "BALLAST_ADMIN_TOKEN": admin,
    }
    key = {"X-API-Key": "checkout-key-0123456789"}
    planted = {
        **TRANSACTIONS[0],
        "amount": 12_000.0,
        "card_number": PLANTED["card"],
        "customer_email": PLANTED["email"],
        "note": f"call me on {PLANTED['phone']} or mail {PLANTED['email']}; card {PLANTED['card_in_text']}",
    }
    with serve("services.fraud:Fraud", **env) as url:
        first = httpx.post(f"{url}/score", json=planted, headers=key, timeout=10)
        assert first.status_code == 200
        wrong = httpx.post(f"{url}/score", json={**planted, "card_number": PLANTED["card_in_text"]}, headers=key)
        assert wrong.status_code == 422
        assert [f["path"] for f in wrong.json()["error"]["fields"]] == ["card_number"]
        for model in ("fraud-gbt", "fraud-logreg"):  # every model fails: the rule stage answers
            faults = {"error_rate": 1.0, "model": model}
            hurt = httpx.post(f"{url}/admin/faults", json=faults, headers={"Authorization": f"Bearer {admin}"})
            assert hurt.status_code == 200
        night = {**planted, "hour": 2, "merchant_category": "jewelry", "device_change": True, "country_mismatch": True}
        ruled = httpx.post(f"{url}/score", json=night, headers=key, timeout=10)
        assert ruled.status_code == 200
        assert ruled.json()["served_by"] == "fraud-rules"
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    store = AuditStore(path)
    assert store.verify() == []
    model_row, rule_row = store.query()
    assert (model_row["principal"], model_row["request_id"]) == ("checkout", first.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{64}", model_row["artifact"])
    assert model_row["checks"] == {"amount_over_reporting_threshold": [0]}
    assert model_row["answers"] == [{k: first.json()[k] for k in ("fraud_probability", "decision")}]
    assert model_row["confidence"] == [round(max(p, 1 - p), 6) for p in [model_row["outputs"]["probabilities"][0][1]]]
    assert rule_row["model"] == "fraud-rules"
    assert rule_row["artifact"] is None
    assert rule_row["rules"] == [["new_device_abroad", "large_on_new_device_or_card", "night_risky_merchant"]]
    [payload] = store.payloads(first.headers["x-request-id"])
    [kept] = payload["inputs"]
    assert "card_number" not in kept
    assert kept["customer_email"].startswith("[REDACTED len=26 hmac=")
    assert kept["note"] == "call me on [PHONE] or mail [EMAIL]; card [CARD]"
    assert kept["amount"] == 12_000.0
    places = {
        "database": path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("audit.sqlite-*")),
        "log": url.log.read_bytes(),
        "metrics": metrics.encode(),
    }
    for where, content in places.items():
        for what, value in PLANTED.items():
            for form in {value, value.replace(" ", ""), value.replace(" ", "").replace("+", "")}:
                assert form.encode() not in content, f"{what} found in the {where}"


def test_feedback_is_joined_to_the_trail_and_its_figures_reach_the_metrics(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    env = {"BALLAST_AUDIT_KEY": KEY, "BALLAST_AUDIT_PATH": str(tmp_path / "audit.sqlite")}
    transactions, labels = fraud.generate(60, seed=31)
    with serve("services.fraud:Fraud", **env) as url:
        ids = []
        for transaction in transactions[:50]:
            answer = httpx.post(f"{url}/score", json=transaction, timeout=10)
            assert answer.status_code == 200
            ids.append(answer.headers["x-request-id"])
        batch = httpx.post(f"{url}/score_batch", json={"transactions": transactions[50:]}, timeout=10)
        store = AuditStore(tmp_path / "audit.sqlite")
        wait_for_rows(store, 51)
        one = httpx.post(f"{url}/v1/feedback", json={"request_id": ids[0], "label": int(labels[0])}, timeout=10)
        assert one.json() == {"accepted": 1, "duplicates": [], "conflicts": [], "unknown": [], "mismatched": []}
        sent = [{"request_id": rid, "label": int(y)} for rid, y in zip(ids[:40], labels[:40], strict=True)]
        sent += [
            {"request_id": "never-seen", "label": 1},
            {"request_id": batch.headers["x-request-id"], "label": [int(y) for y in labels[50:]]},
            {"request_id": ids[45], "label": [0, 1]},
        ]
        many = httpx.post(f"{url}/v1/feedback", json={"labels": sent}, timeout=10).json()
        assert many == {
            "accepted": 40,  # 39 new and the batch request's ten rows
            "duplicates": [ids[0]],
            "conflicts": [],
            "unknown": ["never-seen"],
            "mismatched": [ids[45]],
        }
        bad = httpx.post(f"{url}/v1/feedback", json={"labels": [{"request_id": "", "label": "yes"}]}, timeout=10)
        assert bad.status_code == 422
        assert {f["path"] for f in bad.json()["error"]["fields"]} >= {"labels.0.request_id", "labels.0.label"}
        text = httpx.get(f"{url}/metrics", timeout=10).text
    version = store.query(limit=1)[0]["version"]

    def gauge(name: str) -> float:
        found = re.search(rf'^ballast_{name}\{{pipeline="fraud",version="{version}"\}} (\S+)$', text, re.M)
        assert found is not None, name
        return float(found.group(1))

    assert gauge("feedback_labelled") == 41
    assert gauge("feedback_coverage") == pytest.approx(41 / 51)
    assert 0.5 < gauge("feedback_accuracy") <= 1.0
    assert re.search(r'^ballast_feedback_labels_total\{pipeline="fraud",result="unknown"\} 1\.0$', text, re.M)

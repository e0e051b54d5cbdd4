"""The audit trail on a real server: one row per answered request, none for a refused one, a chain
that verifies, inputs only as keyed digests, and the writer's counters in /metrics."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from models import fraud
from runtime.audit import AuditStore

TRANSACTIONS = fraud.generate(40, seed=29)[0]


def test_every_answer_is_audited_and_the_chain_verifies(serve: Callable[..., Any], tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    tokens = json.dumps(
        {
            "cy": {"token": "cy-auditor-token-0123456", "roles": ["auditor"]},
            "ana": {"token": "ana-operator-token-0123", "roles": ["operator"]},
        }
    )
    env = {"BALLAST_AUDIT_KEY": "an-audit-key-for-the-test", "BALLAST_AUDIT_PATH": str(path), "BALLAST_TOKENS": tokens}
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
        deadline = time.monotonic() + 10
        while store.count() < 31 and time.monotonic() < deadline:
            time.sleep(0.1)
        text = httpx.get(f"{url}/metrics", timeout=10).text
        auditor = {"Authorization": "Bearer cy-auditor-token-0123456"}
        found = httpx.post(f"{url}/admin/audit/query", json={"request_id": ids[3]}, headers=auditor, timeout=10)
        assert [r["request_id"] for r in found.json()["rows"]] == [ids[3]]
        checked = httpx.post(f"{url}/admin/audit/verify", json={}, headers=auditor, timeout=10).json()
        assert checked == {"rows": 31, "problems": []}
        operator = {"Authorization": "Bearer ana-operator-token-0123"}
        assert httpx.post(f"{url}/admin/audit/verify", json={}, headers=operator, timeout=10).status_code == 403
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

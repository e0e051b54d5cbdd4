"""Admin endpoints and the API key on a real server: who may change what, and what changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from models import fraud

TOKEN = "drill-admin-token-0123"
KEY = "drill-api-key-456789"
TXN = fraud.generate(30, seed=9)[0]


def admin(url: str, path: str, body: Any, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/admin/{path}", json=body, headers=headers, timeout=30)


def served_by(url: str, n: int = 5) -> set[str]:
    key = {"X-API-Key": KEY}
    return {httpx.post(f"{url}/score", json=t, headers=key, timeout=10).json()["served_by"] for t in TXN[:n]}


@pytest.fixture(scope="module")
def secured(serve: Callable[..., Any]) -> Any:
    with serve(
        "services.fraud:Fraud",
        BALLAST_ADMIN_TOKEN=TOKEN,
        BALLAST_API_KEY=KEY,
        BALLAST_BREAKER_MIN_CALLS="5",
        BALLAST_BREAKER_WINDOW="10",
        BALLAST_BREAKER_RECOVERY_S="60",
    ) as url:
        yield url


def test_predictions_need_the_api_key(secured: str) -> None:
    missing = httpx.post(f"{secured}/score", json=TXN[0])
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
    assert missing.json()["error"]["type"] == "unauthorized"
    wrong = httpx.post(f"{secured}/score", json=TXN[0], headers={"X-API-Key": KEY + "x"})
    assert wrong.status_code == 403
    assert KEY not in wrong.text
    assert httpx.post(f"{secured}/score", json=TXN[0], headers={"X-API-Key": KEY}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [("faults", {"error_rate": 1.0}), ("breakers/reset", {}), ("reload", {})],
)
@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong-token-0123456789", 403), (KEY, 403)])
def test_admin_endpoints_refuse_without_the_token_and_change_nothing(
    secured: str, path: str, body: Any, token: str | None, status: int
) -> None:
    response = admin(secured, path, body, token)
    assert response.status_code == status
    assert response.json()["error"]["type"] == ("unauthorized" if status == 401 else "forbidden")
    assert served_by(secured) == {"fraud-gbt"}  # no fault was injected


def test_faults_break_the_primary_the_breaker_cuts_it_off_and_reset_and_reload_heal(secured: str) -> None:
    state = admin(secured, "faults", {"error_rate": 1.0, "seed": 3}).json()
    assert state["stages"][0]["faults"]["error_rate"] == 1.0
    assert served_by(secured, 12) == {"fraud-logreg"}
    assert admin(secured, "faults", {}).json()["stages"][0]["breaker"] == "open"
    assert served_by(secured) == {"fraud-logreg"}  # healed, but the breaker is still open (60 s)
    assert admin(secured, "breakers/reset", {}).json()["stages"][0]["breaker"] == "closed"
    assert served_by(secured) == {"fraud-gbt"}

    admin(secured, "faults", {"error_rate": 1.0})
    before = admin(secured, "reload", {}).json()  # a fresh pipeline: faults back to the settings (none)
    assert [s["faults"] for s in before["stages"]] == [None, None]
    assert [s["breaker"] for s in before["stages"]] == ["closed", "closed"]
    assert served_by(secured) == {"fraud-gbt"}


@pytest.mark.parametrize(
    ("path", "body", "rule"),
    [
        ("reload", {"path": "/tmp/evil.onnx"}, "extra_forbidden"),
        ("reload", {"url": "http://example.com/m.onnx"}, "extra_forbidden"),
        ("faults", {"error_rate": 2}, "less_than_equal"),
        ("faults", {"error_rate": "1"}, "float_type"),
        ("faults", {"model": "../../etc/passwd"}, "unknown_model"),
        ("reload", {"version": "../../etc/passwd"}, "string_pattern_mismatch"),
        ("reload", {"version": "-c1v"}, "string_pattern_mismatch"),  # not a tag BentoML's store can hold
        ("rollouts", {"version": "x" * 64}, "string_pattern_mismatch"),
        ("breakers/reset", [], "type"),
    ],
)
def test_admin_bodies_are_validated_and_name_no_files(secured: str, path: str, body: Any, rule: str) -> None:
    response = admin(secured, path, body)
    assert response.status_code == 422
    assert rule in [f["rule"] for f in response.json()["error"]["fields"]]


def test_reload_loads_a_named_version_and_makes_it_production(secured: str) -> None:
    state = admin(secured, "reload", {}).json()
    version = state["version"]
    assert state["stages"][0] == {"name": "fraud-gbt", "version": version, "breaker": "closed", "faults": None}
    again = admin(secured, "reload", {"version": version})
    assert again.status_code == 200
    assert again.json()["version"] == version
    body = httpx.post(f"{secured}/score", json=TXN[0], headers={"X-API-Key": KEY}, timeout=10).json()
    assert body["model"] == {"name": "fraud-gbt", "version": version}
    refused = admin(secured, "reload", {"version": "nosuchversion"})
    assert refused.status_code == 404
    assert refused.json()["error"]["type"] == "not_found"
    assert admin(secured, "breakers/reset", {}).json()["version"] == version  # production did not change


def test_a_model_file_changed_in_the_store_is_refused_and_production_stays(secured: str, bentoml_home: Path) -> None:
    state = admin(secured, "reload", {}).json()
    [model_dir] = (bentoml_home / "models" / "fraud-gbt").glob(state["version"])
    onnx = model_dir / "model.onnx"
    original = onnx.read_bytes()
    try:
        onnx.write_bytes(original + b"\0")  # one byte more: no longer what the store recorded
        refused = admin(secured, "reload", {})
        assert refused.status_code == 422
        assert [f["rule"] for f in refused.json()["error"]["fields"]] == ["artifact_changed"]
    finally:
        onnx.write_bytes(original)
    assert admin(secured, "breakers/reset", {}).json()["version"] == state["version"]
    assert served_by(secured) == {"fraud-gbt"}


def test_a_fallback_can_be_broken_too_then_the_rules_answer(secured: str) -> None:
    key = {"X-API-Key": KEY}
    admin(secured, "faults", {"error_rate": 1.0})
    admin(secured, "faults", {"error_rate": 1.0, "model": "fraud-logreg"})
    try:
        bodies = [httpx.post(f"{secured}/score", json=t, headers=key, timeout=10).json() for t in TXN[:5]]
        assert {(b["served_by"], b["degraded"]) for b in bodies} == {("fraud-rules", True)}
        assert all(0 <= b["fraud_probability"] <= 1 for b in bodies)
    finally:
        admin(secured, "reload", {})


def test_without_a_token_admin_is_off(fraud_url: str) -> None:
    response = admin(fraud_url, "faults", {"error_rate": 1.0})
    assert response.status_code == 403
    assert "disabled" in response.json()["error"]["message"]


def test_the_admin_examples_of_the_openapi_document_work(secured: str) -> None:
    import jsonschema

    spec = httpx.get(f"{secured}/openapi.json").json()
    admin_paths = [p for p in spec["paths"] if p.startswith("/admin/")]
    assert sorted(admin_paths) == [
        "/admin/audit/query",
        "/admin/audit/verify",
        "/admin/breakers/reset",
        "/admin/faults",
        "/admin/models",
        "/admin/reload",
        "/admin/rollback",
        "/admin/rollouts",
        "/admin/rollouts/abort",
        "/admin/rollouts/approve",
        "/admin/rollouts/pause",
        "/admin/rollouts/resume",
    ]
    models = spec["paths"]["/admin/models"]["get"]
    described = httpx.get(f"{secured}/admin/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert described.status_code == 200, described.text
    jsonschema.validate(described.json(), models["responses"]["200"]["content"]["application/json"]["schema"])
    assert described.json()["model"] == "fraud-gbt"
    for path in [
        "/admin/breakers/reset",
        "/admin/faults",
        "/admin/reload",
    ]:  # rollouts: tests/integration/test_rollouts.py
        operation = spec["paths"][path]["post"]
        assert operation["security"] == [{"adminToken": []}]
        response = admin(
            secured, path.removeprefix("/admin/"), operation["requestBody"]["content"]["application/json"]["example"]
        )
        assert response.status_code == 200, (path, response.text)
        jsonschema.validate(response.json(), operation["responses"]["200"]["content"]["application/json"]["schema"])
    admin(secured, "reload", {})  # leave the server as the other tests expect: no faults

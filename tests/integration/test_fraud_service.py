from __future__ import annotations

from typing import Any

import httpx
import pytest

from models import fraud

TXN = fraud.generate(5, seed=99)[0]


def post(url: str, path: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=10)


def test_health_endpoints(fraud_url: str) -> None:
    assert httpx.get(f"{fraud_url}/livez").status_code == 200
    assert httpx.get(f"{fraud_url}/readyz").status_code == 200


def test_score_answers_with_probability_decision_and_provenance(fraud_url: str) -> None:
    response = post(fraud_url, "/score", TXN[0], **{"X-Request-ID": "test-123"})
    assert response.status_code == 200
    body = response.json()
    assert 0.0 <= body["fraud_probability"] <= 1.0
    expected = (
        "decline" if body["fraud_probability"] >= 0.6 else ("review" if body["fraud_probability"] >= 0.2 else "approve")
    )
    assert body["decision"] == expected
    assert (body["served_by"], body["degraded"], body["request_id"]) == ("fraud-gbt", False, "test-123")
    assert body["model"]["name"] == "fraud-gbt"
    assert body["model"]["version"]
    assert response.headers["x-request-id"] == "test-123"


def test_a_risky_transaction_scores_higher_than_an_ordinary_one(fraud_url: str) -> None:
    ordinary = {
        **TXN[0],
        "amount": 30.0,
        "merchant_category": "grocery",
        "device_change": False,
        "country_mismatch": False,
        "card_age_days": 900,
        "txn_count_1h": 0,
        "hour": 12,
    }
    risky = {
        **ordinary,
        "amount": 4000.0,
        "merchant_category": "jewelry",
        "device_change": True,
        "country_mismatch": True,
        "card_age_days": 3,
        "txn_count_1h": 5,
        "txn_count_24h": 6,
        "hour": 3,
        "distance_km": 5000.0,
    }
    low, high = (post(fraud_url, "/score", t).json()["fraud_probability"] for t in (ordinary, risky))
    assert high > low + 0.3


def test_score_batch_keeps_order_and_matches_single_scores(fraud_url: str) -> None:
    response = post(fraud_url, "/score_batch", {"transactions": TXN})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == len(TXN)
    singles = [post(fraud_url, "/score", t).json()["fraud_probability"] for t in TXN]
    assert [r["fraud_probability"] for r in results] == pytest.approx(singles, abs=1e-6)


def test_every_field_error_is_listed(fraud_url: str) -> None:
    bad = {**TXN[0], "amount": -3, "currency": "XYZ", "hour": "noon", "surprise": 1}
    del bad["device_change"]
    response = post(fraud_url, "/score", bad)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert error["request_id"]
    assert {(f["path"], f["rule"]) for f in error["fields"]} == {
        ("amount", "range"),
        ("currency", "category"),
        ("hour", "type"),
        ("surprise", "unknown_field"),
        ("device_change", "required"),
    }


def test_batch_errors_name_the_transaction(fraud_url: str) -> None:
    response = post(fraud_url, "/score_batch", {"transactions": [TXN[0], {**TXN[1], "amount": "x"}]})
    assert response.status_code == 422
    assert [f["path"] for f in response.json()["error"]["fields"]] == ["transactions[1].amount"]


def test_business_rules_are_422_with_their_name(fraud_url: str) -> None:
    response = post(fraud_url, "/score", {**TXN[0], "txn_count_1h": 9, "txn_count_24h": 2})
    assert response.status_code == 422
    assert [(f["path"], f["rule"]) for f in response.json()["error"]["fields"]] == [
        ("txn_count_1h", "burst_exceeds_day")
    ]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "kind"),
    [
        (b"{not json", "application/json", 400, "bad_request"),
        (b"[1, 2]", "application/json", 400, "bad_request"),
        (b'{"amount": 1}', "text/plain", 415, "unsupported_media_type"),
        (b"x" * (2 << 20), "application/json", 413, "payload_too_large"),
    ],
)
def test_malformed_requests_get_a_json_4xx(
    fraud_url: str, body: bytes, content_type: str, status: int, kind: str
) -> None:
    response = httpx.post(f"{fraud_url}/score", content=body, headers={"Content-Type": content_type}, timeout=10)
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind


def test_wrong_method_is_405_with_allow(fraud_url: str) -> None:
    response = httpx.get(f"{fraud_url}/score")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_no_time_for_any_model_means_the_rules_answer(fraud_url: str) -> None:
    response = post(fraud_url, "/score", TXN[0], **{"X-Request-Timeout-Ms": "0.001"})
    assert response.status_code == 200
    body = response.json()
    assert (body["served_by"], body["degraded"]) == ("fraud-rules", True)
    assert body["decision"] in {"approve", "review", "decline"}


def test_metrics_report_the_traffic(fraud_url: str) -> None:
    post(fraud_url, "/score", TXN[0])
    post(fraud_url, "/score", {**TXN[0], "amount": -1})
    text = httpx.get(f"{fraud_url}/metrics").text
    version = httpx.post(f"{fraud_url}/score", json=TXN[0], timeout=10).json()["model"]["version"]
    for needle in (
        f'ballast_requests_total{{outcome="success",pipeline="fraud",version="{version}"}}',
        f'ballast_requests_total{{outcome="rejected",pipeline="fraud",version="{version}"}}',
        'ballast_validation_failures_total{pipeline="fraud",rule="range"}',
        f'ballast_request_duration_seconds_count{{outcome="success",pipeline="fraud",stage="fraud-gbt",version="{version}"}}',
        'ballast_batch_size_rows_count{model="fraud-gbt"',
        'ballast_inference_duration_seconds_count{model="fraud-gbt"',
        'ballast_fallbacks_total{from_stage="fraud-gbt",pipeline="fraud",reason="timeout",to_stage="fraud-logreg"}',
    ):
        assert needle in text, needle

"""BentoML's own tools know Ballast's routes: its clients call them by name (errors as BentoML's own
exceptions, carrying Ballast's body), and its Swagger UI's document lists them."""

from __future__ import annotations

import asyncio

import bentoml
import httpx
import orjson
import pytest

from models import fraud
from services.digits import ZERO

TRANSACTION = fraud.generate(1, seed=21)[0][0]


def test_the_sync_client_scores_by_route_name(fraud_url: str) -> None:
    with bentoml.SyncHTTPClient(fraud_url) as client:
        one = client.score(**TRANSACTION)
        assert one["served_by"] == "fraud-gbt"
        assert one["decision"] in ("approve", "review", "decline")
        batch = client.score_batch(transactions=[TRANSACTION, TRANSACTION])
        assert [r["fraud_probability"] for r in batch["results"]] == [one["fraud_probability"]] * 2


def test_a_422_is_bentomls_exception_with_ballasts_body(fraud_url: str) -> None:
    with bentoml.SyncHTTPClient(fraud_url) as client, pytest.raises(bentoml.exceptions.BentoMLException) as caught:
        client.score(**{**TRANSACTION, "amount": -5, "currency": "XXX"})
    assert caught.value.error_code == 422
    error = orjson.loads(str(caught.value))["error"]
    assert {(f["path"], f["rule"]) for f in error["fields"]} == {("amount", "range"), ("currency", "category")}


def test_the_async_client_classifies(digits_url: str) -> None:
    async def call() -> dict[str, object]:
        async with bentoml.AsyncHTTPClient(digits_url) as client:
            return await client.classify(images=[ZERO])  # type: ignore[no-any-return]

    answer = asyncio.run(call())
    assert answer["served_by"] == "digits-mlp"
    assert answer["results"][0]["label"] == 0  # type: ignore[index]


def test_bentomls_swagger_document_and_schema_list_the_routes(fraud_url: str) -> None:
    docs = httpx.get(f"{fraud_url}/docs.json").json()
    assert {"/score", "/score_batch", "/admin/reload", "/livez", "/metrics"} <= set(docs["paths"])
    assert docs["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["example"]["currency"]
    schema = httpx.get(f"{fraud_url}/schema.json").json()
    assert [r["name"] for r in schema["routes"]] == ["score", "score_batch"]
    assert set(schema["routes"][0]["input"]["properties"]) == set(fraud.Transaction.model_fields)  # context too
    assert httpx.get(f"{fraud_url}/").status_code == 200  # the Swagger UI that reads /docs.json

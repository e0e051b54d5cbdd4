"""Fraud scoring: ``POST /score`` (one transaction) and ``POST /score_batch``.

Chain: gradient-boosted trees (``fraud-gbt``) -> logistic regression (``fraud-logreg``) -> the
domain rules of :func:`models.fraud.rule_score`. Serve with ``bentoml serve services.fraud:Fraud``.
"""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np

from models import fraud
from runtime import (
    BadRequest,
    FieldError,
    OnnxModel,
    Pipeline,
    RecordSchema,
    RuleStage,
    ValidatedRequest,
    ValidationFailed,
)

from .base import PipelineService, ballast_service, provenance
from .http import RequestInfo, route
from .openapi import PROVENANCE, record_schema
from .settings import ServiceSettings

SETTINGS = ServiceSettings()
TRANSACTION = record_schema(fraud.FIELDS)
EXAMPLE = {
    "amount": 249.9,
    "currency": "EUR",
    "merchant_category": "electronics",
    "hour": 14,
    "country_mismatch": False,
    "card_age_days": 540,
    "device_change": False,
    "txn_count_1h": 1,
    "txn_count_24h": 4,
    "distance_km": 12.5,
}
SCORE: dict[str, Any] = {
    "type": "object",
    "required": ["request_id", "fraud_probability", "decision", "served_by", "degraded", "model"],
    "properties": {
        "fraud_probability": {"type": "number", "minimum": 0, "maximum": 1},
        "decision": {"type": "string", "enum": ["approve", "review", "decline"]},
        **PROVENANCE,
    },
}
PROVENANCE_EXAMPLE = {
    "served_by": "fraud-gbt",
    "degraded": False,
    "model": {"name": "fraud-gbt", "version": "vsftv2hjscxr2ax4"},
}


def rules_answer(request: ValidatedRequest) -> dict[str, np.ndarray]:
    """The last stage: domain rules, in the models' output format."""
    assert request.records is not None
    scores = np.array([fraud.rule_score(r) for r in request.records], dtype=np.float32)
    return {
        "label": (scores >= 0.5).astype(np.int64),
        "probabilities": np.stack([1 - scores, scores], axis=1),
    }


@ballast_service("fraud")
class Fraud(PipelineService):
    """Card-transaction fraud scoring: gradient-boosted trees, then logistic regression, then domain
    rules. Every answer says which stage produced it."""

    model_tags = ("fraud-gbt:latest", "fraud-logreg:latest")
    primary_model = bentoml.models.BentoModel(model_tags[0])
    fallback_model = bentoml.models.BentoModel(model_tags[1])
    max_body_bytes = SETTINGS.max_body_bytes

    def make_pipeline(self, models: list[OnnxModel]) -> Pipeline:
        schema = RecordSchema(fraud.FIELDS, input_name="input", max_rows=self.settings.max_batch_size)
        for model in models:
            schema.check_signature(model.signature)
        return Pipeline.build(
            "fraud",
            models=models,
            schema=schema,
            rules=fraud.RULES,
            fallback_rules=RuleStage("fraud-rules", "1", rules_answer),
            settings=self.settings,
        )

    def decide(self, probability: float) -> str:
        if probability >= self.settings.fraud_decline_threshold:
            return "decline"
        return "review" if probability >= self.settings.fraud_review_threshold else "approve"

    @route(
        "POST",
        "/score",
        summary="Score one card transaction",
        request_schema=TRANSACTION,
        response_schema=SCORE,
        request_example=EXAMPLE,
        response_example={
            "request_id": "3f2a9c1b7d4e8a60",
            "fraud_probability": 0.0132,
            "decision": "approve",
            **PROVENANCE_EXAMPLE,
        },
    )
    async def score(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise BadRequest("expected one transaction object; use /score_batch for several")
        prediction = await self.pipeline.predict(payload, request_id=info.request_id, timeout_s=info.timeout_s)
        probability = float(prediction.outputs["probabilities"][0, 1])
        return {
            "fraud_probability": probability,
            "decision": self.decide(probability),
            **provenance(prediction),
        }

    @route(
        "POST",
        "/score_batch",
        summary="Score up to BALLAST_MAX_BATCH_SIZE transactions",
        request_schema={
            "type": "object",
            "required": ["transactions"],
            "additionalProperties": False,
            "properties": {
                "transactions": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": SETTINGS.max_batch_size,
                    "items": TRANSACTION,
                }
            },
        },
        response_schema={
            "type": "object",
            "required": ["results", *PROVENANCE],
            "properties": {
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "fraud_probability": SCORE["properties"]["fraud_probability"],
                            "decision": SCORE["properties"]["decision"],
                        },
                    },
                },
                **PROVENANCE,
            },
        },
        request_example={
            "transactions": [
                EXAMPLE,
                {
                    **EXAMPLE,
                    "amount": 3200.0,
                    "device_change": True,
                    "country_mismatch": True,
                    "distance_km": 4100.0,
                },
            ]
        },
        response_example={
            "request_id": "3f2a9c1b7d4e8a61",
            "results": [
                {"fraud_probability": 0.0132, "decision": "approve"},
                {"fraud_probability": 0.7711, "decision": "decline"},
            ],
            **PROVENANCE_EXAMPLE,
        },
    )
    async def score_batch(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise BadRequest('expected {"transactions": [ ... ]}')
        errors = [FieldError(k, "unknown_field", f"unknown field {k!r}") for k in payload if k != "transactions"]
        if "transactions" not in payload:
            errors.append(FieldError("transactions", "required", "missing array of transactions"))
        elif not isinstance(payload["transactions"], list):
            kind = type(payload["transactions"]).__name__
            errors.append(FieldError("transactions", "type", "expected an array of transactions", f"<{kind}>"))
        if errors:
            raise ValidationFailed(errors, "schema")
        try:
            prediction = await self.pipeline.predict(
                payload["transactions"], request_id=info.request_id, timeout_s=info.timeout_s
            )
        except ValidationFailed as exc:
            raise exc.under("transactions") from None
        probabilities = prediction.outputs["probabilities"][:, 1].tolist()
        return {
            "results": [{"fraud_probability": p, "decision": self.decide(p)} for p in probabilities],
            **provenance(prediction),
        }

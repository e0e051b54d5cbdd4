"""Fraud scoring: ``POST /score`` (one card transaction) and ``POST /score_batch`` (several).

Chain: gradient-boosted trees (``fraud-gbt``) -> logistic regression (``fraud-logreg``) -> the domain
rules of :func:`models.fraud.rule_score`. Every answer says which stage produced it. With the audit
trail on, each answer's row records the compliance checks that held and the rules that fired.
Serve with ``make serve`` (``bentoml serve services.fraud:Fraud``).
"""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.fraud import RULES, Transaction, rule_reasons, rule_score
from services import Compliance, ballast_service


class FraudSettings(BaseSettings):
    """The decision thresholds (``BALLAST_FRAUD_*``)."""

    model_config = SettingsConfigDict(env_prefix="BALLAST_FRAUD_", extra="ignore", frozen=True)

    review_threshold: float = Field(0.2, ge=0.0, le=1.0)
    """Fraud probability from which a transaction is sent to review."""
    decline_threshold: float = Field(0.6, ge=0.0, le=1.0)
    """Fraud probability from which a transaction is declined."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.review_threshold > self.decline_threshold:
            raise ValueError(
                f"review_threshold {self.review_threshold} exceeds decline_threshold {self.decline_threshold}"
            )
        return self


class Score(BaseModel):
    fraud_probability: float = Field(ge=0, le=1)
    decision: Literal["approve", "review", "decline"]


def score(outputs: dict[str, np.ndarray], settings: FraudSettings) -> list[Score]:
    """Each transaction's fraud probability and what to do about it."""
    decline, review = settings.decline_threshold, settings.review_threshold
    return [
        Score(fraud_probability=p, decision="decline" if p >= decline else "review" if p >= review else "approve")
        for p in outputs["probabilities"][:, 1].tolist()
    ]


REPORTING_THRESHOLD = 10_000.0
"""Cash-equivalent amounts from which a transaction is reportable in many jurisdictions."""

COMPLIANCE = (
    Compliance(
        "amount_over_reporting_threshold",
        lambda t, _: t.amount >= REPORTING_THRESHOLD,
        f"the amount is at least {REPORTING_THRESHOLD:,.0f}: the transaction may have to be reported",
    ),
    Compliance(
        "declined_cross_border",
        lambda t, answer: t.country_mismatch and answer["decision"] == "decline",
        "a cross-border transaction was declined (a customer may ask why)",
    ),
)
"""What the audit trail records about each answer, for compliance reviews."""


def fraud_rules(transactions: list[Transaction]) -> dict[str, np.ndarray]:
    """The last stage: domain rules, in the models' output format."""
    scores = np.array([rule_score(t) for t in transactions], dtype=np.float32)
    return {"label": (scores >= 0.5).astype(np.int64), "probabilities": np.stack([1 - scores, scores], axis=1)}


Fraud = ballast_service(
    "fraud",
    models=["fraud-gbt:latest", "fraud-logreg:latest"],
    request=Transaction,
    checks=RULES,
    rules=fraud_rules,
    rule_reasons=rule_reasons,
    compliance=COMPLIANCE,
    answer=score,
    settings=FraudSettings,
    route="/score",
    batch_field="transactions",
)

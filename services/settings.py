"""The services' settings: the runtime's, plus what only the HTTP layer and the business need.
Still one object, one ``BALLAST_`` prefix."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from runtime import Settings


class ServiceSettings(Settings):
    workers: int = Field(1, ge=1, le=64)
    """BentoML worker processes; each loads its own copy of the models."""
    max_body_bytes: int = Field(1 << 20, ge=1024, le=1 << 30)
    """Largest request body accepted; larger ones get 413."""
    tensor_model: str = "tensor-model:latest"
    """Model-store tag served by the generic tensor service (services/tensor.py)."""
    fraud_review_threshold: float = Field(0.2, ge=0.0, le=1.0)
    """Fraud probability from which a transaction is sent to review."""
    fraud_decline_threshold: float = Field(0.6, ge=0.0, le=1.0)
    """Fraud probability from which a transaction is declined."""

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Self:
        if self.fraud_review_threshold > self.fraud_decline_threshold:
            raise ValueError(
                "fraud_review_threshold must not exceed fraud_decline_threshold, got "
                f"{self.fraud_review_threshold} > {self.fraud_decline_threshold}"
            )
        return self

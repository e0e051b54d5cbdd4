"""The services' settings: the runtime's, plus what only the HTTP layer and the business need.
Still one object, one ``BALLAST_`` prefix."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from runtime import Settings


class ServiceSettings(Settings):
    workers: int = Field(1, ge=1, le=64)
    """BentoML worker processes; each loads its own copy of the models."""
    max_body_bytes: int = Field(1 << 20, ge=1024, le=1 << 30)
    """Largest request body accepted; larger ones get 413."""
    tensor_model: str = "tensor-model:latest"
    """Model-store tag served by the generic tensor service (services/tensor.py)."""
    read_timeout_s: float = Field(10.0, gt=0, le=3600)
    """A request's headers and body must arrive within this many seconds of its first byte (or of
    the connection opening); a slower client gets 408 and is disconnected."""
    drain_s: float = Field(2.0, ge=0, le=3600)
    """After SIGTERM: how long ``/readyz`` answers 503 and new requests get 503 (so that a load
    balancer stops sending) before the worker stops taking connections. Requests already admitted
    always finish."""
    shed_wait_ms: float = Field(100.0, ge=0, le=60_000)
    """Refuse a prediction request (503 + Retry-After, before parsing its body) that waited this long
    inside the server before its handler started: the CPU is saturated and it would likely miss its
    deadline. 0 = off."""
    max_inflight: int = Field(256, ge=0, le=1_000_000)
    """Requests a worker handles at once (headers read, answer not yet written; health checks
    included). While that many are in, a new prediction request gets 503 + Retry-After as soon as its
    headers are read (``server_full``). A request's time inside the worker is about this divided by
    the worker's throughput: set it to the concurrency at which the worker reaches its capacity
    within your latency objective (``make overload`` measures both). 0 = no cap."""
    admin_token: SecretStr | None = None
    """Bearer token for the ``/admin/*`` endpoints (reload, breaker reset, fault injection), at
    least 16 characters. Unset: those endpoints answer 403."""
    api_key: SecretStr | None = None
    """When set, prediction endpoints require it in ``X-API-Key`` (401 without, 403 wrong)."""
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

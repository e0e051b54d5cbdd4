"""The HTTP server's settings (``BALLAST_*``): workers, limits, draining, door control, credentials.
The runtime's settings are :class:`runtime.Settings` and :class:`runtime.DrillSettings`; a service's
own settings carry their own prefix (``BALLAST_FRAUD_*``). The BentoML integration reads all of them
once per process (services/bento.py) and passes them in."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Token(BaseModel):
    """A principal's bearer token for the admin routes, and its roles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr
    roles: list[Literal["operator", "approver", "auditor"]] = Field(min_length=1)


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BALLAST_", extra="ignore", validate_default=True, frozen=True)

    workers: int = Field(1, ge=1, le=64)
    """BentoML worker processes; each loads its own copy of the models. A worker's event loop is the
    bound on small models: in one run, one worker per core served 1.6 times one worker's one-row requests
    on two cores (docs/benchmarks.md, "One worker per core")."""
    grpc_port: int = Field(0, ge=0, le=65535)
    """The Open Inference Protocol over gRPC on this port, all interfaces (0: off). Every worker
    listens on it (the port is shared, SO_REUSEPORT), in its own event loop beside HTTP."""
    max_body_bytes: int = Field(1 << 20, ge=1024, le=1 << 30)
    """Largest request body accepted; larger ones get 413."""
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
    """Bearer token of the principal ``admin``, who holds every role, for the ``/admin/*`` endpoints
    (reload, breakers, faults, rollouts), at least 16 characters. With no token at all (this nor
    ``BALLAST_TOKENS``) those endpoints answer 403."""
    tokens: dict[str, Token] = Field(default_factory=dict)
    """Other principals' tokens, as JSON by name: ``{"ana": {"token": "...", "roles": ["operator"]},
    "bo": {"token": "...", "roles": ["approver"]}}``. Operators start and stop rollouts; an approver who
    did not start a rollout approves its promotion; an auditor reads the audit trail and nothing else."""
    api_key: SecretStr | None = None
    """When set, prediction endpoints require it in ``X-API-Key`` (401 without, 403 wrong); its
    caller is the principal ``api`` in the audit trail."""
    api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    """API keys by caller, as JSON: ``{"checkout": "...", "batch-scoring": "..."}`` (each at least 16
    characters). When any is set, prediction endpoints require one in ``X-API-Key``; the audit trail
    records the caller's name with every prediction."""

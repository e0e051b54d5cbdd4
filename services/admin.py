"""The admin routes (behind the admin token): load a model version and make it production, close the
breakers, inject faults for drills. Bodies are strict pydantic models (every violation a 422 like any
other validation error); each answers the production deployment's state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtime import (
    ArtifactChanged,
    FaultInjector,
    FieldError,
    Layer,
    Registry,
    Rule,
    SignatureMismatch,
    ValidationFailed,
)

from .http.openapi import RouteDoc, inline
from .http.routes import RequestInfo, Route

M = TypeVar("M", bound=BaseModel)


class ReloadRequest(BaseModel):
    """Which version of the primary model to load; the service's declared tag when omitted (for
    ``name:latest``, the newest in the store). Models come only from the model store: no paths, no URLs."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$", description="a version in the store")


class ResetRequest(BaseModel):
    """An empty object: this endpoint takes no parameters."""

    model_config = ConfigDict(extra="forbid", strict=True)


class FaultsRequest(BaseModel):
    """Fault injection for a model stage (the primary by default); all zeros (the default) heals it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    error_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of rows on which the model raises")
    slow_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of calls slowed by slow_ms")
    slow_ms: float = Field(0.0, ge=0.0, le=600_000, description="delay added to a slowed call")
    seed: int | None = Field(None, description="seed of the injector's choices")
    model: str | None = Field(None, description="the model stage to affect, by model name; default the primary")

    def injector(self) -> FaultInjector | None:
        return FaultInjector.unless_off(self.error_rate, self.slow_rate, self.slow_ms / 1000, self.seed)


class StageState(BaseModel):
    name: str
    version: str
    breaker: Literal["closed", "half_open", "open"]
    faults: dict[str, float | int | None] | None = Field(description="fault injection in force, if any")


class AdminState(BaseModel):
    """The production deployment after the change."""

    version: str = Field(description="the primary model's version in production")
    stages: list[StageState]


class Admin:
    """The admin routes of a service whose deployments ``registry()`` holds."""

    def __init__(self, registry: Callable[[], Registry]) -> None:
        self.registry = registry
        self._reloading = asyncio.Lock()
        self.routes = [
            Route("POST", "/admin/reload", self.reload, admin=True),
            Route("POST", "/admin/breakers/reset", self.reset_breakers, admin=True),
            Route("POST", "/admin/faults", self.faults, admin=True),
        ]

    def state(self) -> dict[str, Any]:
        production = self.registry().production
        return {"version": production.version, **production.pipeline.state()}

    async def reload(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        """Load a version from the store, warm it, make it production; requests in flight finish on
        the deployment it replaces. Breakers start closed; fault injection returns to the settings."""
        body = parse_body(ReloadRequest, payload)
        registry = self.registry()
        refusals: list[tuple[type[Exception], str, str]] = [
            (LookupError, "unknown_version", f"no such version of {registry.name} in the model store"),
            (ArtifactChanged, "artifact_changed", "the model file is not the one the store recorded; not loaded"),
            (SignatureMismatch, "signature", "the version does not take or give what production does"),
        ]
        async with self._reloading:
            try:
                await registry.promote(body.version)
            except (LookupError, ArtifactChanged, SignatureMismatch) as exc:
                rule, message = next((r, m) for kind, r, m in refusals if isinstance(exc, kind))
                detail = f"{message}: {exc}" if isinstance(exc, SignatureMismatch) else message
                error = FieldError("version", rule, detail, body.version)
                raise ValidationFailed([error], Layer.SCHEMA) from exc
        return self.state()

    async def reset_breakers(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        parse_body(ResetRequest, payload)
        self.registry().production.pipeline.reset_breakers()
        return self.state()

    async def faults(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        body = parse_body(FaultsRequest, payload)
        pipeline = self.registry().production.pipeline
        try:
            pipeline.inject_faults(body.injector(), body.model)
        except KeyError:
            message = f"the chain's models are {pipeline.model_names}"
            raise ValidationFailed([FieldError("model", "unknown_model", message, body.model)], Layer.SCHEMA) from None
        return self.state()

    def docs(self) -> list[RouteDoc]:
        state = inline(AdminState.model_json_schema())
        example = {
            "version": "vsftv2hjscxr2ax4",
            "stages": [{"name": "fraud-gbt", "version": "vsftv2hjscxr2ax4", "breaker": "closed", "faults": None}],
        }
        described: list[tuple[str, str, type[BaseModel], dict[str, Any]]] = [
            ("admin_reload", "Load a model version from the store, warm it, make it production", ReloadRequest, {}),
            ("admin_reset_breakers", "Close the circuit breakers of every model stage", ResetRequest, {}),
            (
                "admin_faults",
                "Inject faults into a model stage (drills): error and slow-call rates; zeros heal it",
                FaultsRequest,
                {"error_rate": 0.3, "slow_rate": 0.0, "slow_ms": 0, "seed": 7},
            ),
        ]
        return [
            RouteDoc(
                route, name, summary, inline(body.model_json_schema()), state, request, example, (400, 413, 415, 422)
            )
            for route, (name, summary, body, request) in zip(self.routes, described, strict=True)
        ]


def parse_body(model: type[M], payload: Any) -> M:
    """``payload`` as ``model``, or :class:`ValidationFailed` listing every violation."""
    if not isinstance(payload, dict):
        kind = f"<{type(payload).__name__}>"
        raise ValidationFailed([FieldError("", Rule.TYPE, "expected a JSON object", kind)], Layer.SCHEMA)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in e["loc"]), e["type"], e["msg"], _short(e.get("input")))
            for e in exc.errors()
        ]
        raise ValidationFailed(errors, Layer.SCHEMA) from None


def _short(value: Any) -> Any:
    if isinstance(value, str):
        return value[:80]
    return value if isinstance(value, int | float | bool | None) else repr(value)[:80]

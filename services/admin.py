"""The admin endpoints: their declaration (:func:`admin_route`), their strict pydantic request
bodies (every violation reported as a 422 like any other validation error) and their answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtime import FaultInjector, FieldError, ValidationFailed

from .http import route

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

STAGE = {
    "type": "object",
    "required": ["name", "version", "breaker", "faults"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "breaker": {"type": "string", "enum": ["closed", "half_open", "open"]},
        "faults": {"type": ["object", "null"], "description": "fault injection in force, if any"},
    },
}
ADMIN_STATE: dict[str, Any] = {
    "type": "object",
    "required": ["stages"],
    "properties": {"stages": {"type": "array", "items": STAGE}},
}


EMPTY: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}
STATE_EXAMPLE = {"stages": [{"name": "fraud-gbt", "version": "vsftv2hjscxr2ax4", "breaker": "closed", "faults": None}]}


def admin_route(
    path: str, summary: str, *, request_schema: dict[str, Any] = EMPTY, request_example: Any = None
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """``@route`` for an admin endpoint: POST, the admin token, the server's state as the answer."""
    return route(
        "POST",
        path,
        summary=summary,
        admin=True,
        errors=(400, 413, 415, 422),
        request_schema=request_schema,
        request_example={} if request_example is None else request_example,
        response_schema=ADMIN_STATE,
        response_example=STATE_EXAMPLE,
    )


class ResetRequest(BaseModel):
    """An empty object: these endpoints take no parameters (no paths, no URLs)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class FaultsRequest(BaseModel):
    """Fault injection for the primary model; all zeros (the default) heals it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    error_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of rows on which the primary raises")
    slow_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of primary calls slowed by slow_ms")
    slow_ms: float = Field(0.0, ge=0.0, le=600_000, description="delay added to a slowed call")
    seed: int | None = Field(None, description="seed of the injector's choices")
    model: str | None = Field(None, description="the model stage to affect, by model name; default the primary")

    def injector(self) -> FaultInjector | None:
        return FaultInjector.unless_off(self.error_rate, self.slow_rate, self.slow_ms / 1000, self.seed)


def parse_body(model: type[M], payload: Any) -> M:
    """``payload`` as ``model``, or :class:`ValidationFailed` listing every violation."""
    if not isinstance(payload, dict):
        kind = f"<{type(payload).__name__}>"
        raise ValidationFailed([FieldError("", "type", "expected a JSON object", kind)], "schema")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in e["loc"]), e["type"], e["msg"], _short(e.get("input")))
            for e in exc.errors()
        ]
        raise ValidationFailed(errors, "schema") from None


def _short(value: Any) -> Any:
    if isinstance(value, str):
        return value[:80]
    return value if isinstance(value, int | float | bool | None) else repr(value)[:80]

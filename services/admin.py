"""The admin routes (behind a bearer token; services/http/auth.py says who may call which).

Operators reload a version, close breakers, inject faults for drills, and start, pause, resume, abort
and roll back rollouts; approvers approve a promotion (not their own rollout's) and roll back. Bodies
are strict pydantic models (every violation a 422 like any other validation error). A version that is
not in the store is a 404; an action the rollout's state does not allow is a 409.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtime import ArtifactChanged, FaultInjector, FieldError, Layer, Rule, SignatureMismatch, ValidationFailed
from runtime.audit import AuditStore
from runtime.registry import BelowFloor, Lifecycle, NotAllowed, Policy

from .http.envelope import HTTPError, HttpErrorType
from .http.openapi import RouteDoc, inline
from .http.routes import RequestInfo, Route

M = TypeVar("M", bound=BaseModel)


VERSION_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
"""A version as BentoML's store spells one: letters, digits, ``.``, ``_`` and ``-``, at most 63
characters, starting and ending with a letter or a digit (anything else is a 422, not a lookup)."""


class ReloadRequest(BaseModel):
    """Which version of the primary model to load; the service's declared tag when omitted (for
    ``name:latest``, the newest in the store). Models come only from the model store: no paths, no URLs."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: str | None = Field(None, pattern=VERSION_PATTERN, description="a version in the store")


class PolicyRequest(BaseModel):
    """What a rollout's stages require; the server's defaults for what is left out."""

    model_config = ConfigDict(extra="forbid", strict=True)

    stages: list[float] | None = Field(None, description="the candidate's share at each canary stage, ending at 1.0")
    shadow_min_requests: int | None = Field(None, ge=1)
    agreement_floor: float | None = Field(None, gt=0, le=1)
    stage_min_s: float | None = Field(None, ge=0)
    stage_min_requests: int | None = Field(None, ge=1)
    stage_max_s: float | None = Field(None, gt=0)
    failure_ratio: float | None = Field(None, gt=1)
    latency_max_ratio: float | None = Field(None, gt=1)
    latency_min_samples: int | None = Field(None, ge=1)
    watch_s: float | None = Field(
        None, ge=0, description="after the approval: how long the previous version stays warm"
    )
    watch_window_s: float | None = Field(None, gt=0)
    watch_min_requests: int | None = Field(None, ge=1)
    watch_failure_increase: float | None = Field(None, gt=0, lt=1)
    watch_latency_ratio: float | None = Field(None, gt=1)
    watch_accuracy_drop: float | None = Field(
        None, gt=0, lt=1, description="roll back on a significant drop of labelled accuracy this large (off if unset)"
    )
    watch_min_labels: int | None = Field(None, ge=1)
    cooldown_s: float | None = Field(None, ge=0, description="after a rollback: how long before another rollout")
    metric_floors: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None, description='held-out metrics the candidate must keep within a drop of production\'s: {"roc_auc": 0.01}'
    )


class RolloutRequest(BaseModel):
    """Start a rollout of a version: it is loaded and checked before it sees any traffic."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: str = Field(pattern=VERSION_PATTERN, description="a version of the primary model in the store")
    policy: PolicyRequest | None = None


class ReasonRequest(BaseModel):
    """Why: kept with the change."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(min_length=1, max_length=500)


class ApproveRequest(BaseModel):
    """An approval of the candidate's promotion; the reason is optional."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field("approved", min_length=1, max_length=500)


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


ADMIN_ERRORS = (400, 404, 409, 413, 415, 422)


class RolloutState(BaseModel):
    id: int
    version: str
    state: Literal["shadow", "canary", "awaiting_approval", "watching"]
    stage: int = Field(description="the canary stage (1-based; 0 in the shadow; one past the last while watched)")
    share: float = Field(description="the candidate's share of the traffic now (1 once promoted and watched)")
    paused: bool
    inconclusive: bool = Field(description="a stage ran out of time without a verdict; never promoted")
    started_by: str
    reason: str | None = Field(description="why the rollout last moved")
    policy: dict[str, Any]
    evidence: dict[str, float] = Field(
        description="the current stage's counts (while watched: the window's), every worker's summed"
    )
    watch_until: float | None = Field(
        description="while watched after its promotion: when the watch ends (seconds since the epoch)"
    )


class Change(BaseModel):
    at: float = Field(description="seconds since the epoch")
    principal: str
    action: str
    detail: dict[str, Any]


class ModelsState(BaseModel):
    """The service's primary model: its versions, production, the rollout in progress, the record."""

    model: str
    production: str
    previous: str | None = Field(description="the version production replaced, kept warm for a rollback")
    versions: list[str] = Field(description="the versions in the model store, newest first")
    rollout: RolloutState | None
    history: list[Change] = Field(description="the latest changes, newest first")


@asynccontextmanager
async def refusing(version: str | None) -> AsyncIterator[None]:
    """Turn what the lifecycle refuses into the admin API's answers: 404 for a version not in the store,
    422 for one whose file changed, that does not fit or whose held-out metrics fall under the policy's
    floors, 409 for an action the state does not allow."""
    try:
        yield
    except NotAllowed as exc:
        raise HTTPError(409, HttpErrorType.CONFLICT, str(exc)) from None
    except BelowFloor as exc:
        raise ValidationFailed([FieldError("version", "metric_floor", str(exc), version)], Layer.SCHEMA) from None
    except ArtifactChanged:
        message = "the model file is not the one the store recorded; it was not loaded"
        raise ValidationFailed([FieldError("version", "artifact_changed", message, version)], Layer.SCHEMA) from None
    except SignatureMismatch as exc:
        message = f"the version does not take or give what production does: {exc}"
        raise ValidationFailed([FieldError("version", "signature", message, version)], Layer.SCHEMA) from None
    except LookupError:
        raise HTTPError(404, HttpErrorType.NOT_FOUND, f"no version {version!r} in the model store") from None


OPERATOR = frozenset({"operator"})
APPROVER = frozenset({"approver"})
EITHER = OPERATOR | APPROVER
AUDITOR = frozenset({"auditor"})
"""Reads the audit trail, and nothing else."""


class AuditQuery(BaseModel):
    """Which audit rows: every filter given must match; oldest first, after ``after_seq``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str | None = Field(None, max_length=128)
    since: float | None = Field(None, ge=0, description="seconds since the epoch, inclusive")
    until: float | None = Field(None, ge=0, description="seconds since the epoch, exclusive")
    version: str | None = Field(None, pattern=VERSION_PATTERN)
    route: Literal["production", "canary", "shadow"] | None = None
    kind: Literal["prediction", "shadow"] | None = None
    decision: str | None = Field(None, min_length=1, max_length=64, description="one of the row's answers has it")
    after_seq: int = Field(0, ge=0, description="only rows after this sequence number (paging)")
    limit: int = Field(100, ge=1, le=1000)


class AuditRows(BaseModel):
    rows: list[dict[str, Any]] = Field(description="each with its seq; oldest first")


class AuditCheck(BaseModel):
    rows: int = Field(description="rows in the trail")
    problems: list[str] = Field(description="what verification found wrong, each naming its row; empty: none")


class Admin:
    """The admin routes of a service whose models ``lifecycle()`` manages."""

    def __init__(
        self, lifecycle: Callable[[], Lifecycle], audit: Callable[[], AuditStore | None] | None = None
    ) -> None:
        self.lifecycle = lifecycle
        self.audit = audit or (lambda: None)
        self.routes = [
            Route("POST", "/admin/reload", self.reload, admin=True),
            Route("POST", "/admin/breakers/reset", self.reset_breakers, admin=True),
            Route("POST", "/admin/faults", self.faults, admin=True),
            Route("GET", "/admin/models", self.models, admin=True, roles=EITHER),
            Route("POST", "/admin/rollouts", self.start_rollout, admin=True),
            Route("POST", "/admin/rollouts/approve", self.approve, admin=True, roles=APPROVER),
            Route("POST", "/admin/rollouts/pause", self.pause, admin=True),
            Route("POST", "/admin/rollouts/resume", self.resume, admin=True),
            Route("POST", "/admin/rollouts/abort", self.abort, admin=True),
            Route("POST", "/admin/rollback", self.rollback, admin=True, roles=EITHER),
            Route("POST", "/admin/audit/query", self.audit_query, admin=True, roles=AUDITOR),
            Route("POST", "/admin/audit/verify", self.audit_verify, admin=True, roles=AUDITOR),
        ]

    def state(self) -> dict[str, Any]:
        production = self.lifecycle().registry.production
        return {"version": production.version, **production.pipeline.state()}

    async def reload(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        """Load a version from the store, warm it, make it production at once (no rollout); requests in
        flight finish on the deployment it replaces. Breakers start closed; fault injection returns to
        the settings."""
        body = parse_body(ReloadRequest, payload)
        async with refusing(body.version):
            await self.lifecycle().reload(body.version, info.principal or "admin")
        return self.state()

    async def reset_breakers(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        parse_body(ResetRequest, payload)
        self.lifecycle().registry.production.pipeline.reset_breakers()
        return self.state()

    async def faults(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        body = parse_body(FaultsRequest, payload)
        pipeline = self.lifecycle().registry.production.pipeline
        try:
            pipeline.inject_faults(body.injector(), body.model)
        except KeyError:
            message = f"the chain's models are {pipeline.model_names}"
            raise ValidationFailed([FieldError("model", "unknown_model", message, body.model)], Layer.SCHEMA) from None
        return self.state()

    # --- rollouts --------------------------------------------------------------------------------

    async def models(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        return self.lifecycle().describe()

    async def start_rollout(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        body = parse_body(RolloutRequest, payload)
        lifecycle = self.lifecycle()
        policy = body.policy.model_dump(exclude_none=True) if body.policy else {}
        try:
            Policy.from_dict({**lifecycle.policy.as_dict(), **policy})
        except ValueError as exc:
            raise ValidationFailed([FieldError("policy", Rule.VALUE, str(exc), None)], Layer.SCHEMA) from None
        async with refusing(body.version):
            await lifecycle.begin(body.version, info.principal or "admin", policy)
        return lifecycle.describe()

    async def approve(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        parse_body(ApproveRequest, payload)
        async with refusing(None):
            await self.lifecycle().approve(info.principal or "admin")
        return self.lifecycle().describe()

    async def pause(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        body = parse_body(ReasonRequest, payload)
        async with refusing(None):
            await self.lifecycle().pause(info.principal or "admin", body.reason)
        return self.lifecycle().describe()

    async def resume(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        body = parse_body(ReasonRequest, payload)
        async with refusing(None):
            await self.lifecycle().resume(info.principal or "admin", body.reason)
        return self.lifecycle().describe()

    async def abort(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        body = parse_body(ReasonRequest, payload)
        async with refusing(None):
            await self.lifecycle().abort(info.principal or "admin", body.reason)
        return self.lifecycle().describe()

    async def rollback(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        body = parse_body(ReasonRequest, payload)
        async with refusing(None):
            await self.lifecycle().rollback(info.principal or "admin", body.reason)
        return self.lifecycle().describe()

    def _trail(self) -> AuditStore:
        store = self.audit()
        if store is None:
            raise HTTPError(404, HttpErrorType.NOT_FOUND, "this service keeps no audit trail (set BALLAST_AUDIT_KEY)")
        return store

    async def audit_query(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        body = parse_body(AuditQuery, payload)
        store = self._trail()
        rows = await asyncio.to_thread(store.query, **body.model_dump())
        return {"rows": rows}

    async def audit_verify(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        parse_body(ResetRequest, payload)
        store = self._trail()
        problems = await asyncio.to_thread(store.verify)
        return {"rows": await asyncio.to_thread(store.count), "problems": problems}

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
        models = inline(ModelsState.model_json_schema())
        models_example = {
            "model": "fraud-gbt",
            "production": "vsftv2hjscxr2ax4",
            "previous": None,
            "versions": ["vsftv2hjscxr2ax4"],
            "rollout": None,
            "history": [],
        }
        rollouts: list[tuple[str, str, type[BaseModel] | None, dict[str, Any] | None]] = [
            ("admin_models", "The model's versions, production, the rollout in progress and its evidence", None, None),
            (
                "admin_start_rollout",
                "Start a rollout of a version: shadow, then the canary stages, then an approval",
                RolloutRequest,
                {"version": "vsftv2hjscxr2ax4"},
            ),
            ("admin_approve", "Approve the promotion of a rollout awaiting it (approvers only)", ApproveRequest, {}),
            ("admin_pause", "Pause a rollout: its gates stop moving it", ReasonRequest, {"reason": "a look at it"}),
            ("admin_resume", "Resume a paused rollout", ReasonRequest, {"reason": "looked fine"}),
            (
                "admin_abort",
                "Abort a rollout: the candidate gets no more traffic",
                ReasonRequest,
                {"reason": "not now"},
            ),
            (
                "admin_rollback",
                "Roll back: stop a rollout, or return production to the version kept warm",
                ReasonRequest,
                {"reason": "errors rose"},
            ),
        ]
        found = [
            RouteDoc(route, name, summary, inline(body.model_json_schema()), state, request, example, ADMIN_ERRORS)
            for route, (name, summary, body, request) in zip(self.routes, described, strict=False)
        ]
        audits = len(self.routes) - 2
        for route, (name, summary, schema_of, request) in zip(
            self.routes[len(described) : audits], rollouts, strict=True
        ):
            schema = inline(schema_of.model_json_schema()) if schema_of is not None else {"type": "null"}
            found.append(RouteDoc(route, name, summary, schema, models, request, models_example, ADMIN_ERRORS))
        query, verify = self.routes[audits:]
        found.append(
            RouteDoc(
                query,
                "admin_audit_query",
                "Audit rows by request id, time, version, route, kind or decision (auditors only)",
                inline(AuditQuery.model_json_schema()),
                inline(AuditRows.model_json_schema()),
                {"request_id": "4f2a9c0e1b7d3a55"},
                {"rows": []},
                ADMIN_ERRORS,
            )
        )
        found.append(
            RouteDoc(
                verify,
                "admin_audit_verify",
                "Verify the audit trail's hash chain; every problem names its row (auditors only)",
                inline(ResetRequest.model_json_schema()),
                inline(AuditCheck.model_json_schema()),
                {},
                {"rows": 0, "problems": []},
                ADMIN_ERRORS,
            )
        )
        return found


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

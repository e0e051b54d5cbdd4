"""The one place that knows BentoML: a declared service becomes a real BentoML service
(``@bentoml.service``; ``bentoml serve``, ``bentoml build``, workers, the model store, ``/livez``,
``/readyz``, ``/metrics``, start-up and shutdown hooks), whose worker serves Ballast's routes through
the front door (services/http/frontdoor.py) before BentoML's middleware.

What happens where:

* **import** (every process): :func:`ballast_service` checks the declaration and makes the BentoML
  service: a class with one ``BentoModel`` attribute per declared tag (so ``bentoml build`` packs the
  models) and the worker count, which BentoML needs before it starts workers. These are the only
  settings read at import; :func:`process_settings` reads every ``BALLAST_*`` setting once per process.
* **worker start** (``to_asgi``): the front door is assembled -- routes, admin routes, credentials,
  admission, drain, documents -- and uvicorn's protocol table is pointed at Ballast's HTTP protocol
  (services/http/protocol.py), which BentoML offers no option for.
* **lifespan start** (``on_startup``): the registry loads the declared version from the store, warms
  it, checks the declared example against every stage, and ``/readyz`` turns 200.
* **shutdown**: admitted requests finish, then the models are released.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import inspect
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import bentoml
import numpy as np
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from runtime import (
    Bounds,
    BusinessRule,
    DrillSettings,
    FaultInjector,
    OnnxModel,
    Overloaded,
    Pipeline,
    RefusalReason,
    Registry,
    SessionConfig,
    Settings,
    columns_of,
    default_metrics,
    learned_bounds,
    rejections,
)
from runtime.audit import AuditHook, AuditStore, AuditWriter, Overflow
from runtime.audit.feedback import Feedback, LabelledRows, Performance, Received
from runtime.audit.redact import Redactor
from runtime.audit.sink import ProcessSink
from runtime.audit.store import Retention
from runtime.drift import DriftHook
from runtime.engine.cache import ResultCache
from runtime.engine.validation import DEFAULT_MARGIN
from runtime.observe.metrics import AuditMetrics, FeedbackMetrics
from runtime.registry import Lifecycle, LifecycleStore

from .admin import Admin
from .declaration import Compliance, Declaration, Outputs, Stage, tensor_fields
from .drift import DriftRoutes, DriftWatch
from .endpoints import Endpoints
from .feedback import FeedbackRoutes
from .http import openapi, protocol
from .http.admission import Admission
from .http.auth import Credentials
from .http.drain import Drain
from .http.envelope import HTTPError, HttpErrorType
from .http.frontdoor import FrontDoor
from .oip import grpc_service
from .oip.rest import OipRoutes
from .settings import ServerSettings

log = logging.getLogger("ballast.service")
T = TypeVar("T")

REFERENCE = "reference.json"
"""Per-feature statistics of the training data, stored beside ``model.onnx`` (models/store.py)."""
REFERENCE_SAMPLE = "reference_sample.npy"
"""Up to a few thousand training rows, columns in the reference's feature order."""


@dataclass(frozen=True)
class ProcessSettings:
    runtime: Settings
    drills: DrillSettings
    server: ServerSettings


@functools.cache
def process_settings() -> ProcessSettings:
    """Every ``BALLAST_*`` setting, read once per process."""
    return ProcessSettings(Settings(), DrillSettings(), ServerSettings())


@functools.cache
@functools.cache
def own_settings(cls: type[BaseSettings] | None) -> BaseSettings | None:
    """A service's own settings (``BALLAST_FRAUD_*``, say), read once per process: one object, which
    the routes and the audit's description share (the answers computed for a request's response
    are reused for its audit row only when both ask with the same settings object)."""
    return cls() if cls is not None else None


# --- the model store ----------------------------------------------------------------------------


def stored(tag: str) -> Any:
    """A model of BentoML's store (or of the bento being served); :class:`LookupError` if absent."""
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as exc:
        raise LookupError(f"no model {tag!r} in the model store") from exc


def versions(name: str) -> list[str]:
    """The store's versions of model ``name``, newest first."""
    try:
        found = bentoml.models.list(name)
    except bentoml.exceptions.NotFound:
        return []
    return [str(m.tag.version) for m in sorted(found, key=lambda m: m.info.creation_time, reverse=True)]


def reference_bounds(model: Any, features: Sequence[str], margin: float = DEFAULT_MARGIN) -> dict[str, Bounds]:
    """Bounds per feature learned from the training statistics stored with ``model``; warns when
    they would refuse stored training rows."""
    path = Path(model.path_of(REFERENCE))
    if not path.is_file():
        raise LookupError(
            f"{model.tag} has no {REFERENCE}; store it with training data to learn ranges "
            "(python -m models.store NAME FILE.onnx --reference DATA.csv)"
        )
    stats = json.loads(path.read_text())
    missing = [f for f in features if f not in stats]
    if missing:
        raise LookupError(f"{model.tag}'s {REFERENCE} has no statistics for {missing}")
    bounds = learned_bounds({f: stats[f]["min"] for f in features}, {f: stats[f]["max"] for f in features}, margin)
    log.info("%s: learned ranges %s", model.tag, ", ".join(f"{f} {b}" for f, b in bounds.items()))
    sample = Path(model.path_of(REFERENCE_SAMPLE))
    if sample.is_file():
        rows = np.load(sample, allow_pickle=False)
        refused = rejections(bounds, list(stats), rows)
        if refused:
            log.warning(
                "%s: the learned ranges would refuse stored training rows: %s (of %d rows)",
                model.tag,
                ", ".join(f"{f} {n}" for f, n in refused.items()),
                len(rows),
            )
    return bounds


# --- the service instance (one per worker) ----------------------------------------------------------


def audit_path(settings: Settings, service: str) -> Path:
    """Where the service's audit database lives (``BALLAST_AUDIT_PATH``, else under BentoML's home)."""
    if settings.audit_path:
        return Path(settings.audit_path)
    return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")) / "ballast" / f"{service}-audit.sqlite"


def state_path(settings: Settings, service: str) -> Path:
    """Where the service's lifecycle database lives (``BALLAST_STATE_PATH``, else under BentoML's home)."""
    if settings.state_path:
        return Path(settings.state_path)
    return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")) / "ballast" / f"{service}.sqlite"


class ServedService:
    """Base of every declared service's class: its registry of deployments and its lifecycle."""

    declaration: ClassVar[Declaration]

    def __init__(self) -> None:
        self.settings = process_settings()
        primary = self.declaration.primary
        default = primary.tag.split(":", 1)[1] if ":" in primary.tag else "latest"
        self.registry = Registry(
            primary.model,
            self.load,
            lambda: versions(primary.model),
            default=default,
            metadata=lambda version: dict(stored(f"{primary.model}:{version}").info.metadata),
        )
        runtime = self.settings.runtime
        self.lifecycle = Lifecycle(
            self.registry,
            LifecycleStore(state_path(runtime, self.declaration.name)),
            worker=f"{socket.gethostname()}:{os.getpid()}",
            shadow_in_flight=runtime.shadow_max_in_flight,
            tolerance=runtime.shadow_tolerance,
            sync_s=runtime.lifecycle_sync_s,
            metrics=default_metrics() if self.settings.drills.metrics_enabled else None,
        )
        d = self.declaration
        self.service_settings = own_settings(d.settings)
        self.audit: AuditWriter | None = None
        self.audit_hook: AuditHook | None = None
        self.feedback: Feedback | None = None
        if runtime.audit_key is not None:
            metrics = default_metrics() if self.settings.drills.metrics_enabled else None
            path = audit_path(runtime, d.name)
            key = runtime.audit_key.get_secret_value().encode()
            self.audit = AuditWriter(
                AuditStore(path),
                key=key,
                sink=ProcessSink(path, key) if runtime.audit_writer == "process" else None,
                max_queue=runtime.audit_max_queue,
                overflow=Overflow(runtime.audit_overflow),
                observer=AuditMetrics(metrics, d.name) if metrics else None,
                retention=Retention.from_days(
                    runtime.audit_retain_days, runtime.audit_payload_retain_days, runtime.feedback_retain_days
                ),
            )
            self.audit_hook = AuditHook(
                self.audit,
                key,
                describe=lambda record: d.audit_facts(record, self.service_settings),
                payload_share=runtime.audit_payload_share,
                redactor=Redactor(d.request if d.kind == "records" else None, key),
            )
            self.lifecycle.on_shadow = self.audit_hook.on_shadow
            self.feedback = Feedback(self.audit.store)
            self.lifecycle.labelled = self.feedback.accuracy
        self.drift = (
            DriftWatch(d.name, runtime, default_metrics() if self.settings.drills.metrics_enabled else None)
            if runtime.drift_enabled
            else None
        )
        self._drift_ticker: asyncio.Task[None] | None = None
        self._grpc: tuple[Any, Any] | None = None
        """The gRPC server and its health servicer, when ``BALLAST_GRPC_PORT`` is set."""

    def load(self, version: str) -> Pipeline:
        """A pipeline over ``version`` of the primary model and the declared fallbacks (in a worker thread)."""
        d, settings = self.declaration, self.settings
        tags = [f"{d.primary.model}:{version}", *(stage.tag for stage in d.models[1:])]
        models, stages = [], []
        drift: DriftHook | None = None
        try:
            for index, (stage, tag) in enumerate(zip(d.models, tags, strict=True)):
                found = stored(tag)
                if index == 0:
                    found_primary = found
                recorded = found.info.metadata.get("onnx_sha256")
                if recorded is None:
                    log.warning("%s has no recorded SHA-256 (stored before it was recorded): not verified", found.tag)
                stage_settings = settings.runtime.stage(found.tag.name, stage.overrides())
                models.append(
                    OnnxModel.from_path(
                        found.path_of("model.onnx"),
                        name=found.tag.name,
                        version=str(found.tag.version),
                        config=SessionConfig.from_settings(settings.runtime, stage_settings),
                        faults=FaultInjector.from_settings(settings.drills) if index == 0 else None,
                        sha256=recorded,
                    )
                )
                stages.append(stage_settings)
            learned = None
            if d.learn_ranges:
                assert d.request is not None
                learned = reference_bounds(stored(tags[0]), [c.name for c in columns_of(d.request)])
            schema = d.schema(models[0].signature, settings.runtime.max_request_rows, learned)
            runtime = settings.runtime
            cache = None
            if runtime.cache_max_bytes:
                metrics = default_metrics() if settings.drills.metrics_enabled else None
                cache = ResultCache(
                    models[0].sha256 or f"{models[0].name}:{models[0].version}",
                    max_bytes=runtime.cache_max_bytes,
                    ttl_s=runtime.cache_ttl_s,
                    observer=metrics.cache_observer(d.name, models[0].version) if metrics else None,
                )
            drift = self.drift_hook(models[0].version, found_primary, models[0])
            return Pipeline.build(
                d.name,
                models=models,
                stages=stages,
                schema=schema,
                settings=settings.runtime,
                drills=settings.drills,
                rules=d.checks,
                fallback_rules=d.rule_stage(),
                examples=[d.request_example(models[0].signature, learned)],
                cache=cache,
                hooks=[hook for hook in (self.audit_hook, drift) if hook],
                closing=[drift] if drift else [],
            )
        except BaseException:
            for model in models:
                model.close()
            if drift is not None:
                drift.close()
            raise

    def drift_hook(self, version: str, stored_model: Any, primary: OnnxModel) -> DriftHook | None:
        """The drift hook of ``version`` (``None``: drift off, or nothing to watch); a failure to
        make it is logged, never a failed deployment."""
        if self.drift is None:
            return None
        try:
            return self.drift.hook(
                self.declaration,
                version,
                Path(stored_model.path_of(REFERENCE_SAMPLE)),
                primary,
                stored_model.info.metadata,
            )
        except Exception:
            log.exception("%s %s: drift is not watched", self.declaration.name, version)
            return None

    def audit_guard(self) -> None:
        """Refuse a request (503) while the audit trail cannot keep up, if the service fails closed."""
        audit = self.audit
        if audit is not None and audit.overflow is Overflow.FAIL_CLOSED and not audit.accepting:
            raise Overloaded(RefusalReason.AUDIT_BEHIND, retry_after_s=1.0)

    @bentoml.on_startup
    async def start(self) -> None:
        """Deploy the production version (the declared one the first time; then what the lifecycle
        database says), resume a rollout in progress; /readyz turns 200 after this."""
        await self.lifecycle.start()
        port = self.settings.server.grpc_port
        if port:
            routes = _oip(
                self.declaration,
                self.settings,
                lambda: self,
                _endpoints(self.declaration, self.settings, lambda: self),
                _credentials(self.settings),
            )
            self._grpc = await grpc_service.serve(routes, f"ballast-{self.declaration.name}", port)
        if self.drift is not None:
            self._drift_ticker = asyncio.get_running_loop().create_task(
                self._tick_drift(self.drift, self.settings.runtime.drift_window_s), name="ballast-drift-tick"
            )

    @staticmethod
    async def _tick_drift(drift: DriftWatch, window_s: float) -> None:
        """Close drift windows whose time is up even when no request comes (a request closes them
        too): every twentieth of the window's time, between 1 s and a minute."""
        period = min(60.0, max(1.0, window_s / 20))
        while True:
            await asyncio.sleep(period)
            try:
                drift.tick()
            except Exception:
                log.exception("drift: closing windows by time failed")

    @bentoml.on_shutdown
    async def stop(self) -> None:
        """Finish admitted requests, then release the models; flush the audit trail."""
        if self._drift_ticker is not None:
            self._drift_ticker.cancel()
        if self._grpc is not None:
            server, checker = self._grpc
            await checker.enter_graceful_shutdown()  # health says NOT_SERVING; calls in flight finish
            await server.stop(self.settings.server.drain_s)
        await self.lifecycle.close()
        if self.drift is not None:
            await asyncio.to_thread(self.drift.close)
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close, self.settings.server.drain_s)
        await self.registry.close()

    def __is_ready__(self) -> bool:
        return self.registry.ready


class BallastService(bentoml.Service[T]):  # type: ignore[misc]  # bentoml ships no type stubs
    """A BentoML service whose worker app is Ballast's front door (see the module docstring)."""

    def to_asgi(self, is_main: bool = True) -> Any:
        settings = process_settings()
        declaration: Declaration = self.inner.declaration
        instance: Callable[[], ServedService] = bentoml.get_current_service
        endpoints = _endpoints(declaration, settings, instance)

        def audit() -> AuditStore | None:
            writer = instance().audit
            return writer.store if writer is not None else None

        admin = Admin(lambda: instance().lifecycle, audit)
        report = functools.partial(_report_feedback, declaration.name)
        feedback = FeedbackRoutes(
            lambda: instance().feedback,
            window_s=settings.runtime.feedback_window_s,
            on_received=report if settings.drills.metrics_enabled else None,
            on_labelled=lambda labelled: _judge_performance(instance().drift, labelled),
            enabled=settings.runtime.audit_key is not None,
        )
        credentials = _credentials(settings)
        drift = DriftRoutes(lambda: instance().drift)
        documents = Documents(
            self, declaration, endpoints, admin, (feedback, drift), instance, api_key=credentials.api_key
        )
        metrics = default_metrics if settings.drills.metrics_enabled else None
        protocol.install()
        oip = _oip(declaration, settings, instance, endpoints, credentials)
        return FrontDoor(
            [*endpoints.routes, *feedback.routes, *drift.routes, *admin.routes],
            super().to_asgi(is_main),
            max_body_bytes=settings.server.max_body_bytes,
            read_timeout_s=settings.server.read_timeout_s,
            credentials=credentials,
            drain=Drain(settings.server.drain_s),
            admission=Admission(
                settings.server.shed_wait_ms / 1000,
                settings.runtime.retry_after_s,
                settings.server.max_inflight,
                on_refused=lambda path, reason: _count_refusal(metrics, path, reason),
            ),
            documents={
                "/openapi.json": documents.openapi,
                "/docs.json": documents.bentoml_openapi,
                "/schema.json": documents.bentoml_schema,
            },
            count_refusal=lambda path, reason: _count_refusal(metrics, path, reason),
            mounted=oip,
            before_metrics=(lambda: _before_metrics(instance())) if metrics else None,
        )


def _before_metrics(service: ServedService) -> None:
    default_metrics().buffer.flush()
    if service.audit is not None:
        service.audit.report()


def _report_feedback(service: str, received: Received, figures: list[Performance]) -> None:
    reported = FeedbackMetrics(default_metrics(), service)
    counts = {
        "accepted": len(received.accepted),
        "duplicate": len(received.duplicates),
        "conflict": len(received.conflicts),
        "unknown": len(received.unknown),
        "mismatched": len(received.mismatched),
    }
    reported.received(counts, received.delays_s)
    for found in figures:
        if found.service == service:
            reported.figures(found.version, found.coverage, found.accuracy, found.roc_auc, found.labelled)


def _judge_performance(drift: DriftWatch | None, labelled: LabelledRows) -> None:
    if drift is not None:
        drift.judge_performance(labelled)


def _endpoints(declaration: Declaration, settings: Any, service: Callable[[], ServedService]) -> Endpoints:
    """The service's routes, answering through ``service()``'s lifecycle."""
    fails_closed = settings.runtime.audit_key is not None and settings.runtime.audit_overflow == "fail_closed"
    return Endpoints(
        declaration,
        lambda: service().lifecycle,
        own_settings(declaration.settings),
        guard=(lambda: service().audit_guard()) if fails_closed else None,  # nothing on the path otherwise
    )


def _credentials(settings: Any) -> Credentials:
    tokens = {name: (t.token, list(t.roles)) for name, t in settings.server.tokens.items()}
    return Credentials.from_secrets(
        settings.server.admin_token, settings.server.api_key, tokens, settings.server.api_keys
    )


def _oip(
    declaration: Declaration,
    settings: Any,
    service: Callable[[], ServedService],
    endpoints: Endpoints,
    credentials: Credentials,
) -> OipRoutes:
    """The Open Inference Protocol's routes of the service (``/v2``, and gRPC when it is on)."""
    return OipRoutes(
        declaration,
        lambda: service().lifecycle,
        endpoints,
        ready=lambda: service().registry.ready,
        credentials=credentials,
        max_body_bytes=settings.server.max_body_bytes,
        max_rows=settings.runtime.max_request_rows,
        server_version=_version(),
    )


def _version() -> str:
    """Ballast's version, as installed."""
    try:
        return importlib.metadata.version("ballast")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _count_refusal(metrics: Callable[[], Any] | None, route: str, reason: str) -> None:
    if metrics is not None:
        m = metrics()
        m.series(m.refused, route, reason).inc()


class Documents:
    """The service's documents, built from the production deployment when first asked for (and again
    after a new version is promoted)."""

    def __init__(
        self,
        service: BallastService[Any],
        declaration: Declaration,
        endpoints: Endpoints,
        admin: Admin,
        others: tuple[FeedbackRoutes, DriftRoutes],
        instance: Callable[[], ServedService],
        *,
        api_key: bool,
    ) -> None:
        self._service = service
        self._declaration = declaration
        self._endpoints = endpoints
        self._admin = admin
        self._others = others
        self._instance = instance
        self._api_key = api_key
        self._built: tuple[int, dict[str, Any], list[openapi.RouteDoc]] | None = None

    def _docs(self) -> tuple[dict[str, Any], list[openapi.RouteDoc]]:
        registry = self._instance().registry
        if not registry.ready:
            raise HTTPError(503, HttpErrorType.NOT_READY, "the models are loading; retry")
        pipeline = registry.pick()
        if self._built is None or self._built[0] != id(pipeline):
            docs = [*self._endpoints.docs(pipeline), *(d for o in self._others for d in o.docs()), *self._admin.docs()]
            d = self._declaration
            spec = openapi.document(f"Ballast {d.name}", d.description, docs, api_key=self._api_key)
            self._built = (id(pipeline), spec, docs)
        return self._built[1], self._built[2]

    def openapi(self) -> dict[str, Any]:
        return self._docs()[0]

    def bentoml_openapi(self) -> dict[str, Any]:
        return openapi.merged(self._service.openapi_spec.asdict(), self._docs()[0])

    def bentoml_schema(self) -> dict[str, Any]:
        return openapi.bentoml_schema(self._declaration.name, self._declaration.description, self._docs()[1])


# --- declaring a service ------------------------------------------------------------------------------


def ballast_service(
    name: str,
    *,
    models: Sequence[str | Stage],
    request: type[BaseModel] | None = None,
    rules: Callable[[list[Any]], Outputs] | None = None,
    checks: Sequence[BusinessRule | Callable[[Any], bool]] = (),
    answer: Callable[..., Sequence[BaseModel]] | None = None,
    settings: type[BaseSettings] | None = None,
    learn_ranges: bool = False,
    route: str = "/predict",
    batch_route: str | bool = True,
    batch_field: str = "records",
    examples: Sequence[Any] = (),
    description: str | None = None,
    compliance: Sequence[Compliance] = (),
    rule_reasons: Callable[[Any], Sequence[str]] | None = None,
) -> Any:
    """Declare a Ballast service; returns the BentoML service (``bentoml serve module:Name``).

    ``models``
        model-store tags, the primary first, then fallbacks in order; a :class:`Stage` for a stage
        with its own settings (``Stage("m:latest", max_batch_size=1)``).
    ``request``
        the request type: a pydantic model of ``float``/``int``/``bool``/``Literal`` fields (one
        record per row; field constraints are the content rules), or of :class:`Tensor` fields.
        ``None``: the primary's ONNX inputs, as named tensors.
    ``rules``
        the rule stage, when no model can answer: ``f(records) -> {output name: array}``, giving the
        models' outputs (checked at start-up on the declared example).
    ``checks``
        business rules every row must pass: functions ``row -> bool`` (name = rule, docstring = message)
        or :class:`runtime.BusinessRule`.
    ``answer``
        how a row's answer reads: ``f(outputs) -> list[YourModel]``, or ``f(outputs, settings)`` when
        ``settings`` is declared; default: every output by name.
    ``settings``
        the service's own settings (a pydantic-settings class with its own env prefix).
    ``learn_ranges``
        bound numeric fields that declare none by the training data's range (stored with the primary),
        widened by a quarter of the spread and rounded outward.
    ``route``, ``batch_route``, ``batch_field``
        the paths; records services also get ``{route}_batch`` taking ``{batch_field: [records]}``
        unless ``batch_route`` is ``False``.
    ``compliance``, ``rule_reasons``
        for the audit trail: named checks over each row and its answer (:class:`Compliance`), and
        which of the rule stage's rules fired for a row.
    """
    records = request is not None and not tensor_fields(request)
    derived = (f"{route}_batch" if batch_route and records else None) if isinstance(batch_route, bool) else batch_route
    caller = inspect.currentframe()
    module = caller.f_back.f_globals.get("__name__", __name__) if caller and caller.f_back else __name__
    if description is None:
        description = (getattr(sys.modules.get(module), "__doc__", None) or "").strip()
    declaration = Declaration(
        name=name,
        models=tuple(m if isinstance(m, Stage) else Stage(m) for m in models),
        request=request,
        answer=answer,
        checks=tuple(BusinessRule.of(c) for c in checks),
        rules=rules,
        route=route,
        batch_route=derived,
        batch_field=batch_field,
        settings=settings,
        learn_ranges=learn_ranges,
        description=description,
        examples=tuple(examples),
        compliance=tuple(compliance),
        rule_reasons=rule_reasons,
    )
    declaration.check_answer()
    attributes: dict[str, Any] = {
        "__module__": module,
        "__doc__": declaration.description,
        "declaration": declaration,
        **{f"model_{i}": bentoml.models.BentoModel(stage.tag) for i, stage in enumerate(declaration.models)},
    }
    cls = type("".join(part.title() for part in name.replace("-", "_").split("_")), (ServedService,), attributes)
    return bentoml.service(
        service_class=BallastService,
        name=name,
        workers=process_settings().server.workers,
        traffic={"timeout": 30},  # requests that reach BentoML's app (its timeout middleware)
        logging={"access": {"enabled": False}},  # Ballast's routes never reach BentoML's access log
    )(cls)

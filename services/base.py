"""What every Ballast service class shares: loading its chain's models from the store, the
pipeline's life (warm-up at start, readiness, draining at shutdown) wired to BentoML's hooks, and
the admin endpoints (reload, breaker reset, fault injection) behind the admin token."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import bentoml

from runtime import FaultInjector, FieldError, OnnxModel, Pipeline, Prediction, SessionConfig, ValidationFailed

from . import protocol
from .admin import FaultsRequest, ResetRequest, admin_route, parse_body
from .http import BallastService, RequestInfo
from .settings import ServiceSettings


def load_chain(settings: ServiceSettings, primary: Any, *fallbacks: Any) -> list[OnnxModel]:
    """The chain's models from BentoML's store (tags, or ``BentoModel`` attributes already
    resolved): the primary gets the fault injector when ``BALLAST_FAULT_*`` asks for one."""
    config = SessionConfig.from_settings(settings)
    return [
        OnnxModel.from_bentoml(primary, config=config, faults=FaultInjector.from_settings(settings)),
        *(OnnxModel.from_bentoml(model, config=config) for model in fallbacks),
    ]


def provenance(prediction: Prediction) -> dict[str, Any]:
    """The fields every answer carries: who answered, whether degraded, which model version."""
    return {
        "request_id": prediction.request_id,
        "served_by": prediction.served_by,
        "degraded": prediction.degraded,
        "model": {"name": prediction.model_name, "version": prediction.model_version},
    }


class PipelineService:
    """Base of the service classes. A subclass names its models' store tags in ``model_tags``
    (primary first; declare them as ``bentoml.models.BentoModel`` attributes too, so that
    ``bentoml build`` packs them) and builds its pipeline from the loaded models in
    :meth:`make_pipeline`."""

    model_tags: ClassVar[tuple[str, ...]] = ()
    pipeline: Pipeline

    def __init__(self) -> None:
        self.settings = ServiceSettings()
        self.pipeline = self._load_pipeline()
        self._reloading = asyncio.Lock()

    def _load_pipeline(self) -> Pipeline:
        """A pipeline over this service's models, loaded from the store by their tags."""
        return self.make_pipeline(load_chain(self.settings, *self.model_tags))

    def make_pipeline(self, models: list[OnnxModel]) -> Pipeline:
        raise NotImplementedError

    @bentoml.on_startup
    async def start(self) -> None:
        """Warm the models and seed the latency models; /readyz turns 200 after this."""
        await self.pipeline.start()

    @bentoml.on_shutdown
    async def stop(self) -> None:
        """Finish admitted requests, then release the models."""
        await self.pipeline.close()

    def __is_ready__(self) -> bool:
        return self.pipeline.ready

    # --- admin endpoints (bearer token; see services/auth.py) ---------------------------------

    @admin_route("/admin/reload", "Load the models again from the model store, warm them, then switch to them")
    async def admin_reload(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        """Models come only from the store, by the service's own tags (``model_tags``): a request
        names no path or URL. Requests in flight finish on the old models; breakers start closed and
        fault injection returns to the ``BALLAST_FAULT_*`` settings."""
        parse_body(ResetRequest, payload)
        async with self._reloading:
            pipeline = await asyncio.to_thread(self._load_pipeline)
            await pipeline.start()
            old, self.pipeline = self.pipeline, pipeline
            await old.close()
        return self.pipeline.state()

    @admin_route("/admin/breakers/reset", "Close the circuit breakers of every model stage")
    async def admin_reset_breakers(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        parse_body(ResetRequest, payload)
        self.pipeline.reset_breakers()
        return self.pipeline.state()

    @admin_route(
        "/admin/faults",
        "Inject faults into a model stage (drills): error and slow-call rates; zeros heal it",
        request_schema=FaultsRequest.model_json_schema(),
        request_example={"error_rate": 0.3, "slow_rate": 0.0, "slow_ms": 0, "seed": 7},
    )
    async def admin_faults(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        faults = parse_body(FaultsRequest, payload)
        try:
            self.pipeline.inject_faults(faults.injector(), faults.model)
        except KeyError:
            message = f"the chain's models are {self.pipeline.model_names}"
            raise ValidationFailed([FieldError("model", "unknown_model", message, faults.model)], "schema") from None
        return self.pipeline.state()


def ballast_service(name: str) -> Any:
    """``@bentoml.service`` as every Ballast service is declared: Ballast's routes served before
    BentoML's middleware (:class:`~services.http.BallastService`), worker count from
    ``BALLAST_WORKERS``, a read deadline on every request (services/protocol.py), BentoML's access
    log off (Ballast's routes never reach it), and a 30 s cap on requests that do reach BentoML's
    app (its timeout middleware holds each request until then)."""
    settings = ServiceSettings()
    protocol.install(settings.read_timeout_s)
    return bentoml.service(
        service_class=BallastService,
        name=name,
        workers=settings.workers,
        traffic={"timeout": 30},
        logging={"access": {"enabled": False}},
    )

"""What every Ballast service class shares: loading its chain's models from the store, and the
pipeline's life (warm-up at start, readiness, draining at shutdown) wired to BentoML's hooks."""

from __future__ import annotations

from typing import Any

import bentoml

from runtime import FaultInjector, OnnxModel, Pipeline, Prediction, SessionConfig

from .http import BallastService
from .settings import ServiceSettings


def load_chain(settings: ServiceSettings, primary: Any, *fallbacks: Any) -> list[OnnxModel]:
    """The chain's models from BentoML's store (``BentoModel`` attributes, already resolved): the
    primary gets the fault injector when ``BALLAST_FAULT_*`` asks for one."""
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
    """Base of the service classes: subclasses set ``self.pipeline`` in ``__init__``."""

    pipeline: Pipeline

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


def ballast_service(name: str) -> Any:
    """``@bentoml.service`` as every Ballast service is declared: Ballast's routes served before
    BentoML's middleware (:class:`~services.http.BallastService`), worker count from
    ``BALLAST_WORKERS``, BentoML's access log off (those routes never reach it), and a 30 s cap on
    requests that do reach BentoML's app (its timeout middleware holds each request until then)."""
    settings = ServiceSettings()
    return bentoml.service(
        service_class=BallastService,
        name=name,
        workers=settings.workers,
        traffic={"timeout": 30},
        logging={"access": {"enabled": False}},
    )

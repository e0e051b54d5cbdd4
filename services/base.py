"""What every Ballast service class shares: loading its chain's models from the store, and the
pipeline's life (warm-up at start, readiness, draining at shutdown) wired to BentoML's hooks."""

from __future__ import annotations

from typing import Any

import bentoml

from runtime import FaultInjector, OnnxModel, Pipeline, SessionConfig

from .settings import ServiceSettings


def load_chain(settings: ServiceSettings, primary: Any, *fallbacks: Any) -> list[OnnxModel]:
    """The chain's models from BentoML's store (``BentoModel`` attributes, already resolved): the
    primary gets the fault injector when ``BALLAST_FAULT_*`` asks for one."""
    config = SessionConfig.from_settings(settings)
    return [
        OnnxModel.from_bentoml(primary, config=config, faults=FaultInjector.from_settings(settings)),
        *(OnnxModel.from_bentoml(model, config=config) for model in fallbacks),
    ]


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

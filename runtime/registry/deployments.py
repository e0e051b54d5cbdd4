"""Versions of a served model and their deployments: name -> versions -> loaded deployments, and the
aliases that say which deployment answers.

A *deployment* is one :class:`~runtime.pipeline.Pipeline` built for one version of the service's
primary model (its fallbacks and rule stage as the service declares them). An *alias* names a
deployment; ``production`` answers every request::

    deploy(version)    load and start a deployment (in a worker thread; requests keep flowing); a version
                       that does not take and give what production does is refused before it starts
    promote(version)   deploy it if needed, move ``production`` to it, then retire every deployment
                       no alias names: it stops admitting, finishes what it admitted, closes
    pick()             the pipeline that answers the next request

``pick`` is the seam where traffic rules go (a canary's share, a shadow's mirror); today it always
answers ``production``. Nothing here knows where versions come from: the service hands in a
``loader`` (version -> pipeline) and a ``versions`` listing (BentoML's model store, for Ballast's
services).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..pipeline import Pipeline

log = logging.getLogger(__name__)

PRODUCTION = "production"

Loader = Callable[[str], Pipeline]
"""Builds (does not start) the pipeline of a version; runs in a worker thread. ``"latest"`` asks for
the newest version."""


class SignatureMismatch(TypeError):
    """A version's model does not take or give what the version in production does."""


def check_fits(candidate: Pipeline, production: Pipeline) -> None:
    """:class:`SignatureMismatch` unless ``candidate``'s primary takes the same inputs and its chain
    gives the same outputs (names, dtypes, row shapes) as ``production``'s."""
    for side, theirs, ours in (
        ("inputs", candidate.chain.primary.model.signature.inputs, production.chain.primary.model.signature.inputs),
        ("outputs", candidate.chain.outputs, production.chain.outputs),
    ):
        got = {s.name: (s.dtype, s.row_shape) for s in theirs}
        want = {s.name: (s.dtype, s.row_shape) for s in ours}
        if got != want:
            described = ", ".join(s.describe() + f" {s.name}" for s in theirs)
            expected = ", ".join(s.describe() + f" {s.name}" for s in ours)
            raise SignatureMismatch(f"its {side} are {described}; production's are {expected}")


@dataclass(slots=True)
class Deployment:
    """One version, loaded and serving or ready to serve."""

    version: str
    pipeline: Pipeline
    loaded_at: float = field(default_factory=time.time)
    """Wall-clock time the deployment started (seconds since the epoch)."""


class Registry:
    def __init__(
        self,
        name: str,
        loader: Loader,
        versions: Callable[[], Sequence[str]] | None = None,
        default: str = "latest",
    ) -> None:
        self.name = name
        """The primary model's name."""
        self.default = default
        """The version :meth:`deploy` and :meth:`promote` load when given none (the service's own)."""
        self._loader = loader
        self._versions = versions or (lambda: [])
        self._deployments: dict[str, Deployment] = {}
        self._aliases: dict[str, str] = {}
        self._changing = asyncio.Lock()

    # --- reading -------------------------------------------------------------------------------

    def versions(self) -> list[str]:
        """The versions that could be deployed, newest first."""
        return list(self._versions())

    @property
    def production(self) -> Deployment:
        version = self._aliases.get(PRODUCTION)
        if version is None:
            raise LookupError(f"{self.name}: nothing is deployed to {PRODUCTION!r} yet")
        return self._deployments[version]

    @property
    def ready(self) -> bool:
        version = self._aliases.get(PRODUCTION)
        return version is not None and self._deployments[version].pipeline.ready

    def pick(self) -> Pipeline:
        """The pipeline that answers the next request."""
        return self._deployments[self._aliases[PRODUCTION]].pipeline

    def state(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "aliases": dict(self._aliases),
            "deployments": [
                {"version": d.version, "loaded_at": d.loaded_at, **d.pipeline.state()}
                for d in self._deployments.values()
            ],
        }

    # --- changing ------------------------------------------------------------------------------

    async def deploy(self, version: str | None = None) -> Deployment:
        """Load and start ``version`` (a new deployment even if that version is deployed: a reload
        gets fresh breakers and models read again from the store)."""
        pipeline = await asyncio.to_thread(self._loader, version or self.default)
        try:
            current = self._aliases.get(PRODUCTION)
            if current is not None:
                check_fits(pipeline, self._deployments[current].pipeline)
            await pipeline.start()
        except BaseException:
            await pipeline.close()
            raise
        deployment = Deployment(pipeline.chain.primary.model.version, pipeline)
        log.info("%s: deployed version %s", self.name, deployment.version)
        return deployment

    async def promote(self, version: str | None = None, alias: str = PRODUCTION) -> Deployment:
        """Deploy ``version`` and point ``alias`` at it; requests already admitted by the deployment
        it replaces finish there, then that deployment is closed."""
        async with self._changing:
            deployment = await self.deploy(version)
            retired = self._deployments.get(deployment.version)
            self._deployments[deployment.version] = deployment
            previous = self._aliases.get(alias)
            self._aliases[alias] = deployment.version
            log.info("%s: %s -> %s (was %s)", self.name, alias, deployment.version, previous)
            if retired is not None:
                await retired.pipeline.close()
            for stale in [v for v in self._deployments if v not in self._aliases.values()]:
                await self._deployments.pop(stale).pipeline.close()
            return deployment

    async def close(self) -> None:
        """Close every deployment (each finishes what it admitted)."""
        async with self._changing:
            self._aliases.clear()
            while self._deployments:
                _, deployment = self._deployments.popitem()
                await deployment.pipeline.close()

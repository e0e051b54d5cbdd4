"""Versions of a served model and their deployments: which version answers, and the one kept warm
to return to.

A *deployment* is one :class:`~runtime.pipeline.Pipeline` built for one version of the service's
primary model (its fallbacks and rule stage as the service declares them)::

    deploy(version)    load and start a deployment (in a worker thread; requests keep flowing); a version
                       that does not take and give what production does is refused before it starts
    install(d)         make a started deployment production at once; the one it replaces finishes what it
                       admitted, then closes, unless kept warm as ``previous`` (a rollback's target)
    promote(version)   deploy, then install
    restore()          make ``previous`` production again (a rollback)
    pick()             the pipeline that answers the next request

A rollout (runtime/registry/lifecycle.py) adds a candidate beside production. Nothing here knows
where versions come from: the service hands in a ``loader`` (version -> pipeline) and a ``versions``
listing (BentoML's model store, for Ballast's services).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
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
        metadata: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> None:
        self.name = name
        """The primary model's name."""
        self.default = default
        """The version :meth:`deploy` and :meth:`promote` load when given none (the service's own)."""
        self._loader = loader
        self._versions = versions or (lambda: [])
        self._metadata = metadata or (lambda version: {})
        self._production: Deployment | None = None
        self._previous: Deployment | None = None
        self._changing = asyncio.Lock()

    # --- reading -------------------------------------------------------------------------------

    def versions(self) -> list[str]:
        """The versions that could be deployed, newest first."""
        return list(self._versions())

    def metadata(self, version: str) -> Mapping[str, Any]:
        """What the store recorded with ``version`` (held-out ``metrics``, training data, ...)."""
        return self._metadata(version)

    @property
    def production(self) -> Deployment:
        if self._production is None:
            raise LookupError(f"{self.name}: nothing is deployed to {PRODUCTION!r} yet")
        return self._production

    @property
    def previous(self) -> Deployment | None:
        """The version production replaced, kept warm for a rollback (when it was asked to be)."""
        return self._previous

    @property
    def ready(self) -> bool:
        return self._production is not None and self._production.pipeline.ready

    def pick(self) -> Pipeline:
        """The pipeline that answers the next request."""
        assert self._production is not None, "pick() before anything was deployed"
        return self._production.pipeline

    def state(self) -> dict[str, Any]:
        aliases = {PRODUCTION: self._production.version} if self._production else {}
        if self._previous is not None:
            aliases["previous"] = self._previous.version
        deployments = [d for d in (self._production, self._previous) if d is not None]
        return {
            "model": self.name,
            "aliases": aliases,
            "deployments": [
                {"version": d.version, "loaded_at": d.loaded_at, **d.pipeline.state()} for d in deployments
            ],
        }

    # --- changing ------------------------------------------------------------------------------

    async def deploy(self, version: str | None = None) -> Deployment:
        """Load and start ``version`` (a new deployment even if that version is deployed: a reload
        gets fresh breakers and models read again from the store)."""
        pipeline = await asyncio.to_thread(self._loader, version or self.default)
        try:
            if self._production is not None:
                check_fits(pipeline, self._production.pipeline)
            await pipeline.start()
        except BaseException:
            await pipeline.close()
            raise
        deployment = Deployment(pipeline.chain.primary.model.version, pipeline)
        log.info("%s: deployed version %s", self.name, deployment.version)
        return deployment

    async def install(self, deployment: Deployment, keep_previous: bool = False) -> None:
        """Make ``deployment`` (started) production at once. The deployment it replaces is kept warm as
        :attr:`previous` when ``keep_previous`` (closing the one kept before), else closed once its
        admitted requests finish."""
        gone: list[Deployment] = []
        async with self._changing:
            replaced, self._production = self._production, deployment
            if keep_previous:
                if self._previous is not None and self._previous is not deployment:
                    gone.append(self._previous)
                self._previous = replaced if replaced is not deployment else None
            else:
                if replaced is not None and replaced is not deployment:
                    gone.append(replaced)
                if self._previous is deployment:
                    self._previous = None
            old = replaced.version if replaced else None
            log.info("%s: %s -> %s (was %s)", self.name, PRODUCTION, deployment.version, old)
        for retired in gone:
            await retired.pipeline.close()

    async def promote(self, version: str | None = None, keep_previous: bool = False) -> Deployment:
        """Deploy ``version`` and install it."""
        deployment = await self.deploy(version)
        await self.install(deployment, keep_previous=keep_previous)
        return deployment

    async def restore(self) -> Deployment:
        """Make the warm :attr:`previous` production again; the deployment it replaces is closed."""
        if self._previous is None:
            raise LookupError(f"{self.name}: no previous version is kept to return to")
        previous = self._previous
        self._previous = None
        await self.install(previous)
        return previous

    async def keep_warm(self, version: str) -> Deployment:
        """Load ``version`` and keep it warm as :attr:`previous` (a worker that started after a
        promotion, so that a rollback is as quick on it as on the others); the one kept before closes."""
        if self._previous is not None and self._previous.version == version:
            return self._previous
        deployment = await self.deploy(version)
        async with self._changing:
            gone, self._previous = self._previous, deployment
        if gone is not None:
            await gone.pipeline.close()
        return deployment

    async def release_previous(self) -> None:
        """Stop keeping :attr:`previous` warm (closed once its admitted requests finish)."""
        async with self._changing:
            gone, self._previous = self._previous, None
        if gone is not None:
            log.info("%s: released %s", self.name, gone.version)
            await gone.pipeline.close()

    async def close(self) -> None:
        """Close every deployment (each finishes what it admitted)."""
        async with self._changing:
            gone = [d for d in (self._production, self._previous) if d is not None]
            self._production = self._previous = None
        for deployment in gone:
            await deployment.pipeline.close()

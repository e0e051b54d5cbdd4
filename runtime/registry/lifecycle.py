"""A model's lifecycle on one worker: the candidate beside production, the traffic it gets, the
evidence this worker gathers, and the decisions every worker shares through the lifecycle store
(runtime/registry/state.py).

On the request path (cheap: with no rollout, one attribute read)::

    pick(key)                    production, or the candidate for the stage's share of routing keys
    answered(arm, failed, s)     counted for the gates while a rollout runs (and for the watch after
                                 a promotion)
    shadow(answer)               in the shadow phase, a copy for the candidate after production answered

Every ``sync_s`` (and after each operator action) :meth:`Lifecycle.sync` writes this worker's evidence
to the store, follows what the store says (the production alias, the rollout's phase and stage: another
worker or an operator may have moved them), and asks :func:`~.rollout.decide` whether the rollout
should move; a decision is written only if the rollout is still where it was decided on, so two
workers deciding alike move it once. After an approval the rollout is *watched* (see
:func:`~.rollout.watch`): the previous version stays warm on every worker, this worker's counts go to
time slots of :data:`WATCH_SLOT_S` in the store, and the sliding window they add up to is compared with
the previous version as production measured it during the rollout; a rollback moves the production
alias back in the same transaction that ends the rollout. Operators start, approve, pause, resume,
abort and roll back through the methods below; approval needs another principal than the one who
started the rollout, and no rollout starts within the cooldown of one rolled back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audit.hook import ShadowRun
from ..core.codes import Arm
from ..engine.session import OnnxModel
from ..engine.validation.request import all_finite
from ..observe.metrics import RuntimeMetrics
from ..pipeline import Pipeline, Prediction
from .deployments import PRODUCTION, Deployment, Registry
from .rollout import Phase, Policy, decide, watch
from .state import Conflict, LifecycleStore, RolloutRecord
from .traffic import Comparison, Copy, Evidence, Judge, ShadowMirror, agrees, distance, place

log = logging.getLogger(__name__)

SYSTEM = "ballast"
"""The principal of the changes the gates make."""
SIDE = {Arm.PRODUCTION: "production", Arm.CANARY: "candidate"}
WATCH_SLOT_S = 10.0
"""The length of the time slots a watch's evidence is kept in (its window moves in these steps)."""


class NotAllowed(Exception):
    """An operator action the rollout's state or the principal does not allow."""


class BelowFloor(ValueError):
    """A candidate whose held-out metrics fall under the policy's floors: it never starts."""


@dataclass(slots=True)
class Running:
    """The rollout as this worker serves it."""

    record: RolloutRecord
    candidate: Deployment
    share: float
    shadow: bool


def shadow_rows(model: OnnxModel, most: int = 64) -> int:
    """How many rows the shadow runs together on ``model``: a model cheap enough to run on the event
    loop's thread (``inline_max_s``) gets batches that stay that cheap, so that no copy pays a hop to
    a worker thread; a costlier one gets up to ``most`` per hop. (With batches of up to 64 rows the
    fraud model's predicted time crossed the inline limit, batches hopped to a worker thread, and in
    some runs production's p95 went from 3 to 25 ms at half of capacity: benchmarks/shadow_cost.py.)"""
    limit = model.config.inline_max_s
    if limit <= 0 or model.compute.predict(1) > limit:
        return most
    rows = 1
    while rows < most and model.compute.predict(rows * 2) <= limit:
        rows *= 2
    return rows


def summarized(evidence: Mapping[str, float]) -> dict[str, float]:
    """A stage's evidence for a reader: the counts, and the shadow's means (distance of outputs, the
    candidate's compute per copy in ms), without the latency histograms' buckets."""
    found = {k: v for k, v in evidence.items() if "latency" not in k and not k.endswith("_sum")}
    answered = evidence.get("shadow_answered", 0)
    if answered:
        found["shadow_mean_distance"] = evidence.get("shadow_distance_sum", 0.0) / answered
        found["shadow_mean_inference_ms"] = 1000 * evidence.get("shadow_inference_sum", 0.0) / answered
    return found


class Lifecycle:
    def __init__(
        self,
        registry: Registry,
        store: LifecycleStore,
        worker: str,
        *,
        policy: Policy | None = None,
        shadow_in_flight: int = 16,
        tolerance: float = 0.05,
        sync_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        metrics: RuntimeMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.worker = worker
        self.policy = policy or Policy()
        """The policy of rollouts started without one."""
        self.tolerance = tolerance
        """How far a shadow's probability may be from production's and still agree."""
        self.sync_s = sync_s
        self.evidence = Evidence()
        self.mirror = ShadowMirror(shadow_in_flight, self.evidence)
        self._clock = clock
        self.metrics = metrics
        self._running: Running | None = None
        self._watching: RolloutRecord | None = None
        """The promoted rollout this worker is watching."""
        self._watch_baseline: tuple[int, dict[str, float]] | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.on_shadow: Callable[[ShadowRun], None] | None = None
        """Told of each shadow run (the audit trail's row of it)."""
        self._telling: tuple[Pipeline, Judge] | None = None
        self.labelled: Callable[[str, float, float], tuple[int, int]] | None = None
        """(correct, labelled rows) of a version's predictions made from one time to another (the
        labelled feedback), for a watch whose policy judges accuracy."""

    @property
    def model(self) -> str:
        return self.registry.name

    # --- the request path ------------------------------------------------------------------------

    def pick(self, key: str) -> tuple[Pipeline, Arm]:
        """The pipeline that answers a request whose routing key is ``key``, and which arm it is."""
        running = self._running
        if running is None or running.share <= 0.0 or place(key) >= running.share:
            return self.registry.pick(), Arm.PRODUCTION
        return running.candidate.pipeline, Arm.CANARY

    def find(self, version: str) -> tuple[Pipeline, Arm] | None:
        """The pipeline of ``version`` when it answers here: production's, or the running rollout's
        candidate (as a canary); ``None`` otherwise."""
        if self.registry.ready and self.registry.production.version == version:
            return self.registry.pick(), Arm.PRODUCTION
        running = self._running
        if running is not None and running.candidate.version == version:
            return running.candidate.pipeline, Arm.CANARY
        return None

    @property
    def comparing(self) -> bool:
        """Whether a rollout (or the watch after one) is gathering evidence. Its comparisons need the
        models' own answers: an answer from the result cache would look faster and never fail, so
        callers bypass the cache while this holds."""
        return self._running is not None or self._watching is not None

    def answered(self, arm: Arm, failed: bool, seconds: float) -> None:
        """Count an answer (or a failure to answer) for the running rollout's gates, or its watch."""
        if self._running is not None or self._watching is not None:
            self.evidence.answered(SIDE[arm], failed, seconds)

    def shadow(self, answer: Prediction) -> None:
        """In the shadow phase, queue a copy of a request production answered, for the candidate."""
        running = self._running
        if running is None or not running.shadow or not answer.inputs:
            return
        rows = next(iter(answer.inputs.values())).shape[0]
        copy = Copy(answer.inputs, answer.outputs, answer.degraded, rows, answer.request_id)
        model = running.candidate.pipeline.chain.primary.model
        judge = self._judge if self.on_shadow is None else self._judge_and_tell(running.candidate.pipeline)
        if not self.mirror.mirror(copy, model.run_async, judge, shadow_rows(model)) and self.metrics is not None:
            self.metrics.series(self.metrics.shadow_dropped, self.model).inc()

    def _judge_and_tell(self, pipeline: Pipeline) -> Judge:
        """:meth:`_judge`, then :attr:`on_shadow` told of the run (made once per candidate)."""
        if self._telling is not None and self._telling[0] is pipeline:
            return self._telling[1]
        model = pipeline.chain.primary.model

        def judge(copy: Copy, theirs: Mapping[str, np.ndarray] | None, seconds: float) -> Comparison:
            comparison = self._judge(copy, theirs, seconds)
            if self.on_shadow is not None:
                outputs = None if comparison.failed else theirs
                run = ShadowRun(
                    copy.request_id,
                    pipeline.name,
                    model.name,
                    model.version,
                    model.sha256,
                    copy.inputs,
                    outputs,
                    comparison.agreed,
                    comparison.distance,
                    seconds,
                )
                self.on_shadow(run)
            return comparison

        self._telling = (pipeline, judge)
        return judge

    def _judge(self, copy: Copy, theirs: Mapping[str, np.ndarray] | None, seconds: float) -> Comparison:
        """The candidate's outputs for a copy against production's: failed when it raised, or gave an
        output missing, of another shape, or not finite (what the chain's output check refuses)."""
        failed = theirs is None or any(
            name not in theirs
            or theirs[name].shape != ours.shape
            or (theirs[name].dtype.kind == "f" and not all_finite(theirs[name]))
            for name, ours in copy.outputs.items()
        )
        agreed = (
            theirs is not None and not failed and not copy.degraded and agrees(copy.outputs, theirs, self.tolerance)
        )
        if self.metrics is not None:
            result = "failed" if failed else "agreed" if agreed else "disagreed"
            self.metrics.series(self.metrics.shadow_comparisons, self.model, result).inc()
        if theirs is None or failed:
            return Comparison(agreed=False, failed=True, inference_s=seconds)
        return Comparison(agreed, False, distance(copy.outputs, theirs), seconds)

    # --- life ------------------------------------------------------------------------------------

    async def start(self, *, sync: bool = True) -> None:
        """Deploy the production version the store names (the registry's default the first time, then
        recorded), resume a rollout in progress, and, with ``sync``, follow the store every ``sync_s``."""
        alias = self.store.aliases(self.model).get(PRODUCTION)
        deployment = await self.registry.promote(alias)
        if alias is None:
            self.store.move_alias(self.model, PRODUCTION, deployment.version, SYSTEM, "first deployment")
        await self.sync()
        if sync:
            self._task = asyncio.get_running_loop().create_task(self._follow_forever(), name="ballast-lifecycle")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.mirror.close()
        async with self._lock:
            running, self._running = self._running, None
        if running is not None and running.candidate is not self.registry.production:
            await running.candidate.pipeline.close()

    async def _follow_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sync_s)
            try:
                await self.sync()
            except Exception:
                log.exception("%s: lifecycle sync failed; trying again in %.1f s", self.model, self.sync_s)

    async def sync(self) -> None:
        """Write this worker's evidence, follow the store, decide."""
        async with self._lock:
            running, watched = self._running, self._watching
            if running is not None or watched is not None:
                taken = self.evidence.take()
                if taken and running is not None:
                    self.store.add_evidence(running.record.id, running.record.stage, self.worker, taken)
                elif taken and watched is not None:
                    self.store.add_watch_evidence(watched.id, self._slot(self._clock()), self.worker, taken)
            await self._follow_production()
            record = self.store.active_rollout(self.model)
            await self._follow_rollout(record)
            self._report(record)
            if record is None:
                return
            now = self._clock()
            if record.state in (Phase.SHADOW, Phase.CANARY):
                evidence = self.store.evidence(record.id, record.stage)
                baseline = self._production_evidence(record, range(1, record.stage))
                decision = decide(record, evidence, now, seed=record.id, baseline=baseline)
            elif record.state == Phase.WATCHING:
                window_s = Policy.from_dict(record.policy).watch_window_s
                window = self.store.watch_evidence(record.id, self._slot(now - window_s) + 1)
                labelled = await self._labelled(record, now)
                decision = watch(record, window, self._previous_evidence(record), now, record.id, labelled)
            else:
                return
            if decision is not None:
                await self._apply(
                    record, decision.action, decision.reason, decision.phase, decision.stage, decision.gate
                )

    async def _labelled(self, record: RolloutRecord, now: float) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """Labelled accuracy of the promoted version since its promotion and of the previous one during
        the rollout, when the rollout's policy judges it."""
        labelled = self.labelled
        if labelled is None or record.previous is None or Policy.from_dict(record.policy).watch_accuracy_drop is None:
            return None
        ours = await asyncio.to_thread(labelled, record.version, record.stage_since, now)
        theirs = await asyncio.to_thread(labelled, record.previous, record.started_at, record.stage_since)
        return ours, theirs

    @staticmethod
    def _slot(at: float) -> int:
        return int(at // WATCH_SLOT_S)

    def _production_evidence(self, record: RolloutRecord, stages: range) -> dict[str, float]:
        """Production's evidence over ``stages`` of ``record``."""
        total: dict[str, float] = {}
        for stage in stages:
            for name, value in self.store.evidence(record.id, stage).items():
                if name.startswith("production_"):
                    total[name] = total.get(name, 0.0) + value
        return total

    def _previous_evidence(self, record: RolloutRecord) -> dict[str, float]:
        """The previous version's evidence, as production over every stage of ``record`` (read once)."""
        if self._watch_baseline is None or self._watch_baseline[0] != record.id:
            stages = range(Policy.from_dict(record.policy).watch_stage)
            self._watch_baseline = (record.id, self._production_evidence(record, stages))
        return self._watch_baseline[1]

    async def _apply(
        self, record: RolloutRecord, action: str, reason: str, phase: Phase | None, stage: int | None, gate: str = ""
    ) -> None:
        expect = (record.state, record.stage)
        try:
            if action == "advance":
                self.store.change(record.id, SYSTEM, action, reason, state=phase, stage=stage, expect=expect)
            elif action == "await_approval":
                self.store.change(record.id, SYSTEM, action, reason, state=Phase.AWAITING_APPROVAL, expect=expect)
            elif action == "rollback":
                back = record.previous if record.state == Phase.WATCHING else None
                self.store.change(
                    record.id, SYSTEM, action, reason, state=Phase.ROLLED_BACK, end=True, expect=expect, production=back
                )
            elif action == "hold":
                self.store.change(record.id, SYSTEM, action, reason, inconclusive=True, expect=expect)
            elif action == "watch_passed":
                self.store.change(record.id, SYSTEM, action, reason, state=Phase.PROMOTED, end=True, expect=expect)
        except Conflict:
            return  # another worker moved it first
        log.info("%s: rollout %d of %s: %s (%s)", self.model, record.id, record.version, action, reason)
        self._count(action, gate)
        await self._follow_production()
        current = self.store.active_rollout(self.model)
        await self._follow_rollout(current)
        self._report(current)

    async def _follow_production(self) -> None:
        alias = self.store.aliases(self.model).get(PRODUCTION)
        if alias is None or alias == self.registry.production.version:
            return
        running, previous = self._running, self.registry.previous
        if running is not None and running.candidate.version == alias:
            self._running = None
            await self.registry.install(running.candidate, keep_previous=True)
        elif previous is not None and previous.version == alias:
            await self.registry.restore()
        else:
            await self.registry.promote(alias, keep_previous=True)

    async def _follow_rollout(self, record: RolloutRecord | None) -> None:
        running = self._running
        if (record is None or record.state == Phase.WATCHING) and running is not None:
            self._running = None
            self.evidence.take()
            if running.candidate is not self.registry.production:
                await running.candidate.pipeline.close()
        if record is None:
            await self._end_watch()
            return
        if record.state == Phase.WATCHING:
            if self._watching is None:
                self.evidence.take()
            self._watching = record
            previous = self.registry.previous
            if record.previous is not None and (previous is None or previous.version != record.previous):
                await self.registry.keep_warm(record.previous)  # a worker that started during the watch
            return
        policy = Policy.from_dict(record.policy)
        share = (
            policy.stages[-1] if record.state == Phase.AWAITING_APPROVAL else policy.share(record.state, record.stage)
        )
        if running is not None and running.record.id == record.id:
            if (running.record.state, running.record.stage) != (record.state, record.stage):
                self.evidence.take()  # counts of the stage that ended were written out already
            running.record, running.share, running.shadow = record, share, record.state == Phase.SHADOW
            return
        if running is not None:
            await running.candidate.pipeline.close()
        try:
            candidate = await self.registry.deploy(record.version)
        except Exception as exc:
            log.exception("%s: candidate %s cannot be loaded", self.model, record.version)
            self.store.change(
                record.id,
                SYSTEM,
                "rollback",
                f"the candidate cannot be loaded: {exc}",
                state=Phase.ROLLED_BACK,
                end=True,
            )
            self._running = None
            return
        self.evidence.take()
        self._running = Running(record, candidate, share, record.state == Phase.SHADOW)

    async def _end_watch(self) -> None:
        """The watch ended: kept (the previous version is released) or rolled back (it is production)."""
        watched, self._watching = self._watching, None
        if watched is None:
            return
        self.evidence.take()
        previous = self.registry.previous
        if self.registry.production.version == watched.version and previous is not None:
            await self.registry.release_previous()

    def _count(self, action: str, reason: str = "") -> None:
        metrics = self.metrics
        if metrics is None:
            return
        metrics.rollout_decisions.labels(self.model, action).inc()
        if action == "rollback":
            metrics.rollbacks.labels(self.model, reason or "operator").inc()

    def _report(self, record: RolloutRecord | None) -> None:
        """The rollout's stage and share, as the gauges show them."""
        if self.metrics is None:
            return
        running = self._running
        stage = -1 if record is None else record.stage
        share = running.share if running is not None else 1.0 if self._watching is not None else 0.0
        self.metrics.rollout_stage.labels(self.model).set(stage)
        self.metrics.rollout_share.labels(self.model).set(share)

    # --- operators -------------------------------------------------------------------------------

    async def begin(self, version: str, principal: str, policy: Mapping[str, Any] | None = None) -> RolloutRecord:
        """Start a rollout of ``version``: it is loaded and checked first (a version that does not fit
        the service, or whose file changed, is refused before it sees any traffic)."""
        chosen = Policy.from_dict({**self.policy.as_dict(), **(policy or {})})
        async with self._lock:
            production = self.registry.production.version
            if version == production:
                raise NotAllowed(f"{version} is production already")
            active = self.store.active_rollout(self.model)
            if active is not None and active.state == Phase.WATCHING:
                raise NotAllowed(f"{active.version} is watched after its promotion; roll back or let the watch end")
            if active is not None:
                raise NotAllowed(f"{self.model} has a rollout in progress; abort it first")
            self._check_cooldown()
            below = chosen.below_floors(
                self.registry.metadata(version).get("metrics") or {},
                self.registry.metadata(production).get("metrics") or {},
            )
            if below:
                raise BelowFloor("; ".join(below))
            candidate = await self.registry.deploy(version)
            if candidate.version == production:  # a name that resolves to production ("latest", say)
                await candidate.pipeline.close()
                raise NotAllowed(f"{version} is production already ({production})")
            record = self.store.start_rollout(
                self.model, candidate.version, production, principal, chosen.as_dict(), Phase.SHADOW
            )
            self.evidence.take()
            self._running = Running(record, candidate, 0.0, True)
            self._count("start")
            self._report(record)
        return record

    def _check_cooldown(self) -> None:
        """No rollout starts within the cooldown of the last one, if that was rolled back."""
        latest = self.store.rollouts(self.model, limit=1)
        if not latest or latest[0].state != Phase.ROLLED_BACK or latest[0].ended_at is None:
            return
        until = latest[0].ended_at + Policy.from_dict(latest[0].policy).cooldown_s
        left = until - self._clock()
        if left > 0:
            raise NotAllowed(
                f"rollout {latest[0].id} of {latest[0].version} was rolled back ({latest[0].reason}); "
                f"no new rollout for another {left:.0f} s"
            )

    async def reload(self, version: str | None, principal: str) -> Deployment:
        """Load ``version`` (the registry's default when ``None``) and make it production at once, with
        no rollout (an operator's reload: fresh breakers, models read again); not during a rollout."""
        async with self._lock:
            if self.store.active_rollout(self.model) is not None:
                raise NotAllowed(f"{self.model} has a rollout in progress; finish or abort it first")
            deployment = await self.registry.promote(version)
            self.store.move_alias(self.model, PRODUCTION, deployment.version, principal, "reloaded")
        return deployment

    async def approve(self, principal: str) -> RolloutRecord:
        """Promote the candidate of a rollout that passed every stage: production moves to it, the
        version it replaces stays warm for a rollback."""
        async with self._lock:
            record = self._active("approve")
            if record.state != Phase.AWAITING_APPROVAL:
                raise NotAllowed(f"the rollout is at {record.state}, not awaiting approval")
            if principal == record.started_by:
                raise NotAllowed(f"{principal} started this rollout; another principal must approve it")
            policy = Policy.from_dict(record.policy)
            if policy.watch_s > 0:
                changed = self.store.change(
                    record.id,
                    principal,
                    "approve",
                    f"approved; watched for {policy.watch_s:.0f} s",
                    state=Phase.WATCHING,
                    stage=policy.watch_stage,
                    production=record.version,
                )
            else:
                changed = self.store.change(
                    record.id,
                    principal,
                    "approve",
                    "approved",
                    state=Phase.PROMOTED,
                    end=True,
                    production=record.version,
                )
            await self._follow_production()
            current = self.store.active_rollout(self.model)
            await self._follow_rollout(current)
            self._count("approve")
            self._report(current)
        return changed

    async def pause(self, principal: str, reason: str) -> RolloutRecord:
        return await self._flag(principal, "pause", reason, paused=True)

    async def resume(self, principal: str, reason: str) -> RolloutRecord:
        return await self._flag(principal, "resume", reason, paused=False)

    async def _flag(self, principal: str, action: str, reason: str, paused: bool) -> RolloutRecord:
        async with self._lock:
            record = self._active(action)
            changed = self.store.change(record.id, principal, action, reason, paused=paused)
            await self._follow_rollout(changed)
            self._count(action)
        return changed

    async def abort(self, principal: str, reason: str) -> RolloutRecord:
        """Stop the rollout: the candidate gets no more traffic; production never moved."""
        async with self._lock:
            record = self._active("abort")
            if record.state == Phase.WATCHING:
                raise NotAllowed(f"{record.version} is production already; roll back to return to {record.previous}")
            ended = self.store.change(record.id, principal, "abort", reason, state=Phase.ABORTED, end=True)
            await self._follow_rollout(None)
            self._count("abort")
            self._report(None)
        return ended

    async def rollback(self, principal: str, reason: str) -> str:
        """Return to the version before: during a rollout, stop it; after a promotion, move production
        back to the version kept warm. The version now in production."""
        async with self._lock:
            record = self.store.active_rollout(self.model)
            if record is not None:
                back = record.previous if record.state == Phase.WATCHING else None
                self.store.change(
                    record.id, principal, "rollback", reason, state=Phase.ROLLED_BACK, end=True, production=back
                )
                self._count("rollback", "operator")
                await self._follow_production()
                await self._follow_rollout(None)
                self._report(None)
                return self.registry.production.version
            previous = self.registry.previous
            back = previous.version if previous is not None else self._last_replaced()
            if back is None:
                raise NotAllowed("no rollout in progress and no version before production to return to")
            self._count("rollback", "operator")
            self.store.move_alias(self.model, PRODUCTION, back, principal, f"rollback: {reason}")
            await self._follow_production()  # the warm previous at once; else loaded from the store
            return self.registry.production.version

    def _last_replaced(self) -> str | None:
        """The version production had before the latest promoted rollout, if that is still production."""
        for record in self.store.rollouts(self.model, limit=20):
            if record.state == Phase.PROMOTED:
                current = self.registry.production.version
                return record.previous if record.version == current else None
        return None

    def _active(self, action: str) -> RolloutRecord:
        record = self.store.active_rollout(self.model)
        if record is None:
            raise NotAllowed(f"no rollout in progress to {action}")
        return record

    # --- reading ---------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Production, the version kept warm, the rollout in progress with its traffic share and its
        stage's evidence, and the latest transitions."""
        record = self.store.active_rollout(self.model)
        running = self._running
        rollout = None
        if record is not None:
            policy = Policy.from_dict(record.policy)
            if record.state == Phase.WATCHING:
                since = self._slot(self._clock() - policy.watch_window_s) + 1
                evidence = self.store.watch_evidence(record.id, since)
            else:
                evidence = self.store.evidence(record.id, record.stage)
            rollout = {
                "id": record.id,
                "version": record.version,
                "state": record.state,
                "stage": record.stage,
                "share": running.share if running is not None else policy.share(record.state, record.stage),
                "paused": record.paused,
                "inconclusive": record.inconclusive,
                "started_by": record.started_by,
                "reason": record.reason,
                "policy": record.policy,
                "evidence": summarized(evidence),
                "watch_until": record.stage_since + policy.watch_s if record.state == Phase.WATCHING else None,
            }
        previous = self.registry.previous
        return {
            "model": self.model,
            "production": self.registry.production.version,
            "previous": previous.version if previous is not None else None,
            "versions": self.registry.versions(),
            "rollout": rollout,
            "history": [
                {"at": t.at, "principal": t.principal, "action": t.action, "detail": t.detail}
                for t in self.store.history(self.model, limit=20)
            ],
        }

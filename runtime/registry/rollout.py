"""A rollout's policy and the decisions it takes from the evidence, stage by stage::

    shadow      the candidate answers a copy of each request after production has answered; nobody
                sees its answers. Gates: agreement with production (Wilson bound), failures no more
                frequent than production's (SPRT). Pass -> canary stage 1; fail -> rolled back.
    canary i    the candidate answers ``stages[i]`` of the traffic. Gates: failures (SPRT against
                production's over the same stage), p95 latency ratio (bootstrap). Any gate failing rolls
                back at once. A stage passes once it lasted ``stage_min_s``, the candidate answered
                ``stage_min_requests`` and the latency gate passed, no gate having failed (failures
                rarer than the SPRT can rule on are no evidence against a candidate). A stage that
                reaches ``stage_max_s`` without passing holds and is marked inconclusive: never
                promoted, an operator decides. At a share of 1.0 no production traffic runs beside
                the candidate: its gates compare it with production as measured in the earlier stages
                (the ``baseline``).
    approval    after the last stage the rollout waits for an approval by another principal than the
                one who started it; then production moves to the candidate.
    watching    for ``watch_s`` after the approval the previous version stays loaded and warm, and
                production (the new version) is compared with it as it was measured during the
                rollout, over a sliding window of ``watch_window_s``: a failure rate up by
                ``watch_failure_increase`` (and beyond the previous version's with 99.9 % confidence),
                or a p95 latency ``watch_latency_ratio`` times the previous version's (and above it
                with 99.9 % confidence, by bootstrap), with ``watch_min_requests`` in the window, moves
                production back at once. The watch ends
                with the rollout promoted; the previous version is then released.

:func:`decide` is a pure function of the rollout's record, its stage's evidence and the time: every
worker can ask it and they all answer alike; the one whose write lands first moves the rollout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from statistics import NormalDist
from typing import Any, Self

import numpy as np

from .gates import (
    LATENCY_EDGES,
    AgreementGate,
    LatencyGate,
    RateGate,
    Verdict,
    histogram_p95,
    histogram_p95_ratios,
    wilson_interval,
)
from .state import RolloutRecord


class Phase(StrEnum):
    SHADOW = "shadow"
    CANARY = "canary"
    AWAITING_APPROVAL = "awaiting_approval"
    WATCHING = "watching"
    """Promoted, and watched against the previous version (still warm) for ``watch_s``."""
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Policy:
    """How a candidate earns its traffic (kept with the rollout, so a restart decides alike)."""

    stages: tuple[float, ...] = (0.01, 0.05, 0.2, 1.0)
    """The candidate's share of the traffic at each canary stage."""
    shadow_min_requests: int = 1000
    agreement_floor: float = 0.95
    """The share of requests on which the shadow must answer as production does."""
    stage_min_s: float = 300.0
    stage_min_requests: int = 200
    """Requests the candidate must answer in a stage before it may pass."""
    stage_max_s: float = 3600.0
    """A stage without a verdict by then holds, inconclusive."""
    failure_ratio: float = 2.0
    """How many times production's failure rate stops the rollout (the SPRT's alternative)."""
    alpha: float = 0.01
    """Chance that one gate of one stage fails a candidate as good as production: with the shadow and
    four stages, an equal candidate is rolled back in at most 5 % of rollouts."""
    beta: float = 0.2
    latency_max_ratio: float = 1.2
    latency_min_samples: int = 200
    watch_s: float = 1800.0
    """After the approval: how long production is watched and the previous version kept warm (0: the
    approval ends the rollout and releases it)."""
    watch_window_s: float = 300.0
    """The sliding window the watch compares with the previous version."""
    watch_min_requests: int = 200
    """Requests the window must hold before the watch judges anything."""
    watch_failure_increase: float = 0.02
    """A rise of the failure rate (errors, fallbacks) over the previous version's that rolls back."""
    watch_latency_ratio: float = 2.0
    """A p95 latency this many times the previous version's rolls back."""
    watch_accuracy_drop: float | None = None
    """An accuracy (from labelled feedback) this far below the previous version's rolls back, when the
    drop is also significant (one-sided two-proportion test at the watch's confidence) and both have
    ``watch_min_labels`` labelled rows: the promoted version's since the promotion, the previous one's
    during the rollout. Off by default: labels must arrive within the watch for it to judge."""
    watch_min_labels: int = 200
    metric_floors: dict[str, float] = field(default_factory=dict)
    """Held-out metrics (higher is better: ``roc_auc``, ``accuracy``, ...) the candidate's metadata must
    hold within the given drop of production's, or the rollout does not start: ``{"roc_auc": 0.01}``."""
    cooldown_s: float = 600.0
    """After this rollout is rolled back (by a gate, the watch or an operator), no new rollout of the
    model may start for this long."""

    def __post_init__(self) -> None:
        shares = self.stages
        if not shares or any(not 0 < s <= 1 for s in shares) or list(shares) != sorted(shares) or shares[-1] != 1.0:
            raise ValueError(f"stages must rise within (0, 1] and end at 1.0, got {list(shares)}")
        if not 0 < self.watch_failure_increase < 1 or self.watch_latency_ratio <= 1:
            raise ValueError("watch_failure_increase must be within (0, 1) and watch_latency_ratio > 1")
        if self.watch_accuracy_drop is not None and not 0 < self.watch_accuracy_drop < 1:
            raise ValueError(f"watch_accuracy_drop must be within (0, 1), got {self.watch_accuracy_drop}")

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["stages"] = list(self.stages)
        return found

    def below_floors(self, candidate: Mapping[str, Any], production: Mapping[str, Any]) -> list[str]:
        """What keeps a candidate under :attr:`metric_floors`, given both versions' held-out metrics
        (empty: none)."""
        found = []
        for name, drop in sorted(self.metric_floors.items()):
            theirs, ours = candidate.get(name), production.get(name)
            if not isinstance(theirs, (int, float)) or not isinstance(ours, (int, float)):
                found.append(f"{name} is not in both versions' held-out metrics")
            elif theirs < ours - drop:
                found.append(f"{name} {theirs:.4f} is below production's {ours:.4f} - {drop}")
        return found

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if "stages" in known:
            known["stages"] = tuple(known["stages"])
        return cls(**known)

    def share(self, phase: str, stage: int) -> float:
        """The candidate's share of answered traffic in ``phase`` at ``stage`` (1-based canary stages)."""
        if phase == Phase.CANARY:
            return self.stages[stage - 1]
        if phase in (Phase.AWAITING_APPROVAL, Phase.WATCHING):
            return self.stages[-1]
        return 0.0

    @property
    def watch_stage(self) -> int:
        """The stage number a watched rollout is at (one after the last canary stage)."""
        return len(self.stages) + 1


@dataclass(frozen=True)
class Decision:
    action: str
    """``advance``, ``await_approval``, ``rollback``, ``hold`` or ``watch_passed``."""
    reason: str
    phase: Phase | None = None
    stage: int | None = None
    evidence: dict[str, str] = field(default_factory=dict)
    """Each gate's verdict, for the record."""
    gate: str = ""
    """The gate that failed, for a rollback: ``agreement``, ``shadow_failures``, ``failures``, ``latency``,
    ``watch_failures``, ``watch_latency``, ``watch_accuracy``."""


def decide(
    record: RolloutRecord,
    evidence: Mapping[str, float],
    now: float,
    seed: int = 0,
    baseline: Mapping[str, float] | None = None,
) -> Decision | None:
    """What the rollout should do now, or ``None`` (keep gathering). ``evidence`` is the current
    stage's; ``baseline`` production's over the earlier canary stages (used where production has no
    share). Paused or finished rollouts, and those waiting for an approval, decide nothing by
    themselves."""
    if record.paused or not record.active or record.state not in (Phase.SHADOW, Phase.CANARY):
        return None
    policy = Policy.from_dict(record.policy)
    rate = RateGate(ratio=policy.failure_ratio, alpha=policy.alpha, beta=policy.beta, min_trials=1)
    base = int(evidence.get("production_failures", 0)), int(evidence.get("production_trials", 0))
    if record.state == Phase.SHADOW:
        agreed, compared = int(evidence.get("shadow_agreed", 0)), int(evidence.get("shadow_compared", 0))
        agreement = AgreementGate(floor=policy.agreement_floor, min_requests=policy.shadow_min_requests)
        verdicts = {
            "agreement": agreement.verdict(agreed, compared),
            "failures": rate.verdict(int(evidence.get("shadow_failures", 0)), compared, *base),
        }
        said = {name: v.value for name, v in verdicts.items()}
        if verdicts["agreement"] is Verdict.FAIL:
            reason = f"the shadow agreed with production on {agreed} of {compared}"
            return Decision("rollback", reason, evidence=said, gate="agreement")
        if verdicts["failures"] is Verdict.FAIL:
            return Decision(
                "rollback", "the shadow failed more often than production", evidence=said, gate="shadow_failures"
            )
        if verdicts["agreement"] is Verdict.PASS:
            return Decision("advance", f"shadow passed on {compared} requests", Phase.CANARY, 1, said)
        return _held(record, policy, now, said)
    if policy.share(record.state, record.stage) >= 1.0 and baseline is not None:
        evidence = {**{k: v for k, v in baseline.items() if k.startswith("production_")}, **_candidate_side(evidence)}
        base = int(evidence.get("production_failures", 0)), int(evidence.get("production_trials", 0))
    trials, failures = int(evidence.get("candidate_trials", 0)), int(evidence.get("candidate_failures", 0))
    latency = LatencyGate(max_ratio=policy.latency_max_ratio, min_samples=policy.latency_min_samples)
    verdicts = {
        "failures": rate.verdict(failures, trials, *base),
        "latency": latency.verdict_histograms(
            _buckets(evidence, "candidate_latency"),
            _buckets(evidence, "production_latency"),
            np.random.default_rng(seed),
        ),
    }
    said = {name: v.value for name, v in verdicts.items()}
    if verdicts["failures"] is Verdict.FAIL:
        rate_c = failures / max(trials, 1)
        rate_p = base[0] / max(base[1], 1)
        reason = f"the candidate failed on {rate_c:.2%} of requests, production on {rate_p:.2%}"
        return Decision("rollback", reason, evidence=said, gate="failures")
    if verdicts["latency"] is Verdict.FAIL:
        reason = f"the candidate's p95 latency is over {policy.latency_max_ratio}x production's"
        return Decision("rollback", reason, evidence=said, gate="latency")
    long_enough = now - record.stage_since >= policy.stage_min_s and trials >= policy.stage_min_requests
    if long_enough and verdicts["latency"] is Verdict.PASS:
        share = policy.stages[record.stage - 1]
        if record.stage >= len(policy.stages):
            return Decision(
                "await_approval",
                f"every stage passed ({share:.0%} on {trials} requests)",
                Phase.AWAITING_APPROVAL,
                record.stage,
                said,
            )
        return Decision(
            "advance",
            f"stage {record.stage} ({share:.0%}) passed on {trials} requests",
            Phase.CANARY,
            record.stage + 1,
            said,
        )
    return _held(record, policy, now, said)


def _held(record: RolloutRecord, policy: Policy, now: float, said: dict[str, str]) -> Decision | None:
    """A stage past its longest allowed time holds, inconclusive (once)."""
    if now - record.stage_since >= policy.stage_max_s and not record.inconclusive:
        minutes = policy.stage_max_s / 60
        return Decision("hold", f"not enough evidence within {minutes:.0f} minutes: inconclusive", evidence=said)
    return None


def _candidate_side(evidence: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in evidence.items() if k.startswith("candidate_")}


def _buckets(evidence: Mapping[str, float], prefix: str) -> list[float]:
    return [evidence.get(f"{prefix}_{i}", 0.0) for i in range(len(LATENCY_EDGES))]


WATCH_CONFIDENCE = 0.998
"""Of the Wilson interval whose lower end must pass the previous version's failure rate (99.9 %
one-sided): the window is looked at every second for half an hour."""


def accuracy_dropped(policy: Policy, labelled: tuple[tuple[int, int], tuple[int, int]] | None) -> str | None:
    """Why the promoted version's labelled accuracy rolls it back, or ``None``."""
    if policy.watch_accuracy_drop is None or labelled is None:
        return None
    (correct, rows), (base_correct, base_rows) = labelled
    if min(rows, base_rows) < policy.watch_min_labels:
        return None
    ours, theirs = correct / rows, base_correct / base_rows
    pooled = (correct + base_correct) / (rows + base_rows)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / rows + 1 / base_rows))
    if theirs - ours < policy.watch_accuracy_drop or spread == 0.0:
        return None
    if (theirs - ours) / spread < NormalDist().inv_cdf(WATCH_CONFIDENCE):
        return None
    return (
        f"after the promotion {ours:.2%} of {rows} labelled rows were right; the previous version's "
        f"{theirs:.2%} of {base_rows}"
    )


def watch(
    record: RolloutRecord,
    window: Mapping[str, float],
    baseline: Mapping[str, float],
    now: float,
    seed: int = 0,
    labelled: tuple[tuple[int, int], tuple[int, int]] | None = None,
) -> Decision | None:
    """What a watched rollout should do now, or ``None`` (keep watching). ``window`` is production's
    (the new version's) evidence over the last ``watch_window_s``; ``baseline`` the previous version's,
    as production during the rollout; ``labelled``: (correct, labelled rows) of the new version since
    the promotion and of the previous one during the rollout. A paused watch decides nothing."""
    if record.paused or not record.active or record.state != Phase.WATCHING:
        return None
    policy = Policy.from_dict(record.policy)
    trials, failures = int(window.get("production_trials", 0)), int(window.get("production_failures", 0))
    base_trials, base_failures = int(baseline.get("production_trials", 0)), int(baseline.get("production_failures", 0))
    base_rate = base_failures / base_trials if base_trials else 0.0
    if trials >= policy.watch_min_requests:
        rate = failures / trials
        low = wilson_interval(failures, trials, WATCH_CONFIDENCE)[0]
        if rate >= base_rate + policy.watch_failure_increase and low > base_rate:
            reason = (
                f"after the promotion {rate:.2%} of {trials} requests failed over the last "
                f"{policy.watch_window_s:.0f} s; the previous version failed on {base_rate:.2%}"
            )
            return Decision("rollback", reason, gate="watch_failures")
        mine, theirs = _buckets(window, "production_latency"), _buckets(baseline, "production_latency")
        ratio = histogram_p95(mine) / histogram_p95(theirs) if sum(theirs) >= policy.watch_min_requests else 0.0
        if ratio >= policy.watch_latency_ratio:
            draws = histogram_p95_ratios(mine, theirs, 1000, np.random.default_rng(seed))
            if np.percentile(draws, (1 - WATCH_CONFIDENCE) / 2 * 100) > 1.0:
                reason = (
                    f"after the promotion the p95 latency over the last {policy.watch_window_s:.0f} s is "
                    f"{ratio:.1f}x the previous version's"
                )
                return Decision("rollback", reason, gate="watch_latency")
    dropped = accuracy_dropped(policy, labelled)
    if dropped is not None:
        return Decision("rollback", dropped, gate="watch_accuracy")
    if now - record.stage_since >= policy.watch_s:
        minutes = policy.watch_s / 60
        return Decision("watch_passed", f"watched for {minutes:.0f} minutes after the promotion", Phase.PROMOTED)
    return None

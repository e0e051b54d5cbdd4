"""Rollout decisions: each transition on its own, then whole rollouts simulated on a fake clock with
seeded traffic, many runs per kind of candidate, the rates printed: an equal candidate is rarely rolled
back, a worse one is, too little traffic is inconclusive and never promoted, a silently wrong
candidate never leaves the shadow."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from runtime.registry.gates import latency_histogram
from runtime.registry.rollout import Phase, Policy, decide, watch
from runtime.registry.state import RolloutRecord

POLICY = Policy()


def record(state: str = "shadow", stage: int = 0, since: float = 0.0, **changes: Any) -> RolloutRecord:
    base = RolloutRecord(
        id=1,
        model="m",
        version="v2",
        previous="v1",
        state=state,
        stage=stage,
        stage_since=since,
        paused=False,
        inconclusive=False,
        started_by="operator:ana",
        started_at=0.0,
        ended_at=None,
        reason=None,
        policy=POLICY.as_dict(),
    )
    return dataclasses.replace(base, **changes)


def latencies(prefix: str, seconds: np.ndarray) -> dict[str, float]:
    return {f"{prefix}_{i}": float(c) for i, c in enumerate(latency_histogram(seconds)) if c}


def test_a_policy_checks_its_stages() -> None:
    with pytest.raises(ValueError, match="stages must rise within"):
        Policy(stages=(0.05, 0.01, 1.0))
    with pytest.raises(ValueError, match=r"end at 1\.0"):
        Policy(stages=(0.01, 0.5))
    assert Policy.from_dict(POLICY.as_dict()) == POLICY


def test_a_shadow_that_agrees_advances_and_one_that_does_not_is_rolled_back() -> None:
    agreeing = {"shadow_compared": 1200, "shadow_agreed": 1195, "shadow_failures": 2}
    agreeing |= {"production_trials": 1200, "production_failures": 2}
    decision = decide(record(), agreeing, now=30)
    assert decision is not None
    assert (decision.action, decision.phase, decision.stage) == ("advance", Phase.CANARY, 1)
    wrong = {"shadow_compared": 30, "shadow_agreed": 9, "production_trials": 30}
    decision = decide(record(), wrong, now=1)
    assert decision is not None
    assert (decision.action, decision.reason) == ("rollback", "the shadow agreed with production on 9 of 30")
    assert decide(record(), {"shadow_compared": 10, "shadow_agreed": 10}, now=1) is None  # too early to say


def canary_evidence(
    trials: int, failures: int, base_trials: int, base_failures: int, slowdown: float
) -> dict[str, float]:
    rng = np.random.default_rng(0)
    found: dict[str, float] = {
        "candidate_trials": trials,
        "candidate_failures": failures,
        "production_trials": base_trials,
        "production_failures": base_failures,
    }
    found |= latencies("candidate_latency", slowdown * rng.lognormal(np.log(0.01), 0.4, trials))
    found |= latencies("production_latency", rng.lognormal(np.log(0.01), 0.4, base_trials))
    return found


def test_a_canary_stage_passes_only_after_its_minimum_time_and_requests() -> None:
    evidence = canary_evidence(2000, 20, 40000, 400, 1.0)
    assert decide(record("canary", 1, since=0), evidence, now=POLICY.stage_min_s - 1) is None
    decision = decide(record("canary", 1, since=0), evidence, now=POLICY.stage_min_s)
    assert decision is not None
    assert (decision.action, decision.stage, decision.evidence) == (
        "advance",
        2,
        {"failures": "pass", "latency": "pass"},
    )
    last = decide(record("canary", len(POLICY.stages), since=0), evidence, now=POLICY.stage_min_s)
    assert last is not None
    assert (last.action, last.phase) == ("await_approval", Phase.AWAITING_APPROVAL)


def test_a_failing_or_slow_canary_is_rolled_back_at_once() -> None:
    failing = decide(record("canary", 2, since=0), canary_evidence(500, 25, 10000, 100, 1.0), now=1)
    assert failing is not None
    assert failing.action == "rollback"
    assert "failed on 5.00% of requests, production on 1.00%" in failing.reason
    slow = decide(record("canary", 2, since=0), canary_evidence(500, 5, 10000, 100, 3.0), now=1)
    assert slow is not None
    assert (slow.action, slow.evidence["latency"]) == ("rollback", "fail")


def test_a_stage_without_evidence_holds_once_and_a_paused_or_waiting_rollout_decides_nothing() -> None:
    thin = canary_evidence(3, 0, 300, 3, 1.0)
    held = decide(record("canary", 1, since=0), thin, now=POLICY.stage_max_s)
    assert held is not None
    assert (held.action, held.reason) == ("hold", "not enough evidence within 60 minutes: inconclusive")
    assert decide(record("canary", 1, since=0, inconclusive=True), thin, now=POLICY.stage_max_s + 1) is None
    assert decide(record("canary", 1, paused=True), canary_evidence(500, 50, 1000, 1, 1.0), now=1) is None
    assert decide(record("awaiting_approval", 4), {}, now=10**6) is None


# --- whole rollouts on a fake clock ----------------------------------------------------------------


def simulate(
    seed: int,
    *,
    rps: float,
    candidate_failure: float,
    agreement: float = 0.99,
    slowdown: float = 1.0,
    production_failure: float = 0.01,
    horizon_s: float = 4 * 3600,
    chunk: int = 250,
) -> tuple[str, str, int]:
    """One rollout to its end or the horizon: (outcome, the phase it ended in, candidate requests)."""
    rng = np.random.default_rng(seed)
    current, now, served = record(), 0.0, 0
    evidence: dict[str, float] = defaultdict(float)
    baseline: dict[str, float] = defaultdict(float)
    while now < horizon_s:
        n = chunk if rps * horizon_s > chunk else max(1, int(rps * 60))
        now += n / rps
        share = POLICY.share(current.state, current.stage)
        if current.state == Phase.SHADOW:
            evidence["shadow_compared"] += n
            evidence["shadow_agreed"] += rng.binomial(n, agreement)
            evidence["shadow_failures"] += rng.binomial(n, candidate_failure)
            evidence["production_trials"] += n
            evidence["production_failures"] += rng.binomial(n, production_failure)
            served += n
        else:
            c = rng.binomial(n, share)
            evidence["candidate_trials"] += c
            evidence["candidate_failures"] += rng.binomial(c, candidate_failure)
            evidence["production_trials"] += n - c
            evidence["production_failures"] += rng.binomial(n - c, production_failure)
            for name, count in latencies("candidate_latency", slowdown * rng.lognormal(np.log(0.01), 0.4, c)).items():
                evidence[name] += count
            for name, count in latencies("production_latency", rng.lognormal(np.log(0.01), 0.4, n - c)).items():
                evidence[name] += count
            served += c
        decision = decide(current, evidence, now, seed, baseline)
        if decision is None:
            continue
        if decision.action == "rollback":
            return "rolled_back", current.state, served
        if decision.action == "await_approval":
            return "awaiting_approval", current.state, served
        if decision.action == "hold":
            current = dataclasses.replace(current, inconclusive=True)
            continue
        assert decision.phase is not None
        assert decision.stage is not None
        if current.state == Phase.CANARY:  # production as measured beside the candidate, for the last stage
            for name, value in evidence.items():
                if name.startswith("production_"):
                    baseline[name] += value
        current = dataclasses.replace(current, state=decision.phase, stage=decision.stage, stage_since=now)
        evidence = defaultdict(float)  # each stage is judged on its own evidence
    return ("inconclusive" if current.inconclusive else "unfinished"), current.state, served


def summary(runs: list[tuple[str, str, int]]) -> dict[str, Any]:
    outcomes = [o for o, _, _ in runs]
    found: dict[str, Any] = {o: outcomes.count(o) / len(runs) for o in sorted(set(outcomes))}
    rolled = [n for o, _, n in runs if o == "rolled_back"]
    if rolled:
        found["median candidate requests to a rollback"] = float(np.median(rolled))
    return found


RUNS = 60


def report(name: str, runs: list[tuple[str, str, int]], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    found = summary(runs)
    with capsys.disabled():
        print(f"\nrollout, {name}, {len(runs)} runs: {found}")
    return found


def test_an_equal_candidate_reaches_approval_and_is_rarely_rolled_back(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [simulate(s, rps=100, candidate_failure=0.01) for s in range(RUNS)]
    found = report("candidate as good as production (1 % failures, 100 req/s)", runs, capsys)
    assert found.get("rolled_back", 0) <= 0.05
    assert found.get("awaiting_approval", 0) >= 0.8


def test_a_candidate_failing_three_times_as_often_is_rolled_back(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [simulate(s, rps=100, candidate_failure=0.03) for s in range(RUNS)]
    found = report("candidate failing 3 % against 1 %", runs, capsys)
    assert found.get("rolled_back", 0) >= 0.8
    assert "awaiting_approval" not in found


def test_a_slow_candidate_is_rolled_back(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [simulate(s, rps=100, candidate_failure=0.01, slowdown=3.0) for s in range(RUNS)]
    found = report("candidate 3x slower", runs, capsys)
    assert found.get("rolled_back", 0) >= 0.8


def test_too_little_traffic_is_inconclusive_and_never_promoted(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [simulate(s, rps=1.0, candidate_failure=0.01) for s in range(RUNS // 3)]
    found = report("1 request a second", runs, capsys)
    assert "awaiting_approval" not in found
    assert found.get("inconclusive", 0) >= 0.9


def test_a_silently_wrong_candidate_never_leaves_the_shadow(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [simulate(s, rps=100, candidate_failure=0.0, agreement=0.3) for s in range(RUNS)]
    report("silently wrong candidate (agrees on 30 %, never fails)", runs, capsys)
    assert all((outcome, phase) == ("rolled_back", "shadow") for outcome, phase, _ in runs)


# --- the watch after a promotion -----------------------------------------------------------------


def watched(since: float = 0.0, **changes: Any) -> RolloutRecord:
    return record(Phase.WATCHING, POLICY.watch_stage, since=since, **changes)


def simulate_watch(
    seed: int,
    *,
    rps: float,
    failure: float,
    slowdown: float = 1.0,
    previous_failure: float = 0.01,
    baseline_trials: int = 20_000,
    step_s: float = 5.0,
) -> tuple[str, float]:
    """One watch to its end: (outcome, seconds after the promotion). The previous version's baseline
    is what production answered during the rollout; the new version serves everything, in slots of
    ``step_s`` (the server looks every second; a look every 5 s sees nearly the same windows)."""
    rng = np.random.default_rng(seed)
    baseline = {
        "production_trials": baseline_trials,
        "production_failures": rng.binomial(baseline_trials, previous_failure),
        **latencies("production_latency", rng.lognormal(np.log(0.01), 0.4, baseline_trials)),
    }
    slots: list[dict[str, float]] = []
    keep = int(POLICY.watch_window_s / step_s)
    now, current = 0.0, watched()
    while True:
        now += step_s
        n = rng.poisson(rps * step_s)
        slot: dict[str, float] = {"production_trials": n, "production_failures": rng.binomial(n, failure)}
        slot |= latencies("production_latency", slowdown * rng.lognormal(np.log(0.01), 0.4, n))
        slots = [*slots[-(keep - 1) :], slot]
        window: dict[str, float] = defaultdict(float)
        for counts in slots:
            for name, value in counts.items():
                window[name] += value
        decision = watch(current, window, baseline, now, seed)
        if decision is not None:
            return ("rolled_back" if decision.action == "rollback" else "promoted"), now


def watch_report(name: str, runs: list[tuple[str, float]], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    outcomes = [o for o, _ in runs]
    found: dict[str, Any] = {o: outcomes.count(o) / len(runs) for o in sorted(set(outcomes))}
    rolled = [t for o, t in runs if o == "rolled_back"]
    if rolled:
        found["median seconds to a rollback"] = float(np.median(rolled))
    with capsys.disabled():
        print(f"\nwatch, {name}, {len(runs)} runs: {found}")
    return found


def test_the_watch_ends_in_promotion_after_its_time_unless_paused() -> None:
    quiet = {"production_trials": 10, "production_failures": 0}
    assert watch(watched(), quiet, {}, now=POLICY.watch_s - 1) is None
    decision = watch(watched(), quiet, {}, now=POLICY.watch_s)
    assert decision is not None
    assert (decision.action, decision.phase, decision.reason) == (
        "watch_passed",
        Phase.PROMOTED,
        "watched for 30 minutes after the promotion",
    )
    assert watch(watched(paused=True), quiet, {}, now=POLICY.watch_s) is None
    assert watch(record("canary", 2), quiet, {}, now=POLICY.watch_s) is None


def test_the_watch_needs_enough_requests_a_real_rise_and_significance() -> None:
    baseline = {"production_trials": 10_000, "production_failures": 100}
    thin = watch(watched(), {"production_trials": 100, "production_failures": 50}, baseline, now=1)
    assert thin is None  # half failed, but fewer than watch_min_requests: no verdict yet
    small_rise = watch(watched(), {"production_trials": 5000, "production_failures": 100}, baseline, now=1)
    assert small_rise is None  # 2 % against 1 %: significant, but under the 2-point rise that matters
    rise = watch(watched(), {"production_trials": 1000, "production_failures": 40}, baseline, now=1)
    assert rise is not None
    assert (rise.action, rise.gate) == ("rollback", "watch_failures")
    assert rise.reason.startswith("after the promotion 4.00% of 1000 requests failed")


def test_an_equal_version_is_rarely_rolled_back_by_the_watch(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [simulate_watch(s, rps=20, failure=0.01) for s in range(RUNS)]
    found = watch_report("new version as good as the previous (1 % failures, 20 req/s)", runs, capsys)
    assert found.get("rolled_back", 0) <= 0.05


def test_a_version_failing_after_its_promotion_is_rolled_back_within_minutes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = [simulate_watch(s, rps=20, failure=0.05) for s in range(RUNS)]
    found = watch_report("new version failing 5 % against 1 %", runs, capsys)
    assert found.get("rolled_back", 0) >= 0.95
    assert found["median seconds to a rollback"] <= POLICY.watch_window_s


def test_a_version_three_times_as_slow_after_its_promotion_is_rolled_back(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [simulate_watch(s, rps=20, failure=0.01, slowdown=3.0) for s in range(RUNS)]
    found = watch_report("new version 3x slower", runs, capsys)
    assert found.get("rolled_back", 0) >= 0.95


def test_the_watch_leaves_a_version_alone_at_low_traffic_or_slightly_slower(
    capsys: pytest.CaptureFixture[str],
) -> None:
    quiet = [simulate_watch(s, rps=2, failure=0.01) for s in range(RUNS)]
    assert watch_report("new version as good, 2 req/s", quiet, capsys).get("rolled_back", 0) <= 0.05
    slower = [simulate_watch(s, rps=20, failure=0.01, slowdown=1.5) for s in range(RUNS)]
    assert (
        watch_report("new version 1.5x slower (under the 2x that matters)", slower, capsys).get("rolled_back", 0)
        <= 0.05
    )


def test_a_rise_of_exactly_the_configured_amount_is_caught(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [simulate_watch(s, rps=20, failure=0.03) for s in range(RUNS)]
    assert watch_report("new version failing 3 % against 1 %", runs, capsys).get("rolled_back", 0) >= 0.8


def labelled_runs(accuracy: float, previous: float, rows: int, seeds: int = 400) -> float:
    """Share of seeded runs in which the watch rolls back on labelled accuracy: ``rows`` labelled rows
    each, the previous version right with probability ``previous``, the promoted one ``accuracy``."""
    policy = {**POLICY.as_dict(), "watch_accuracy_drop": 0.02}
    rolled = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        ours, theirs = int(rng.binomial(rows, accuracy)), int(rng.binomial(rows, previous))
        decision = watch(watched(policy=policy), {}, {}, now=1, labelled=((ours, rows), (theirs, rows)))
        rolled += decision is not None and decision.gate == "watch_accuracy"
    return rolled / seeds


def test_labelled_accuracy_rolls_back_a_real_drop_and_rarely_an_equal_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    equal = labelled_runs(0.95, 0.95, rows=2000)
    small = labelled_runs(0.945, 0.95, rows=2000)  # half a point: under the drop that matters
    dropped = labelled_runs(0.90, 0.95, rows=2000)
    thin = labelled_runs(0.80, 0.95, rows=100)  # fewer labels than watch_min_labels
    with capsys.disabled():
        print(
            f"\nwatch on labelled accuracy, 400 runs each: equal {equal:.1%}, -0.5 point {small:.1%}, "
            f"-5 points {dropped:.1%}, -15 points with 100 labels {thin:.1%}"
        )
    assert equal <= 0.01
    assert small <= 0.05  # an observed drop of 2 points happens by chance on a true half point
    assert dropped >= 0.95
    assert thin == 0.0
    off = watch(watched(), {}, {}, now=1, labelled=((1000, 2000), (1900, 2000)))
    assert off is None  # the policy does not judge accuracy unless asked to

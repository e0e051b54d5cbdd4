"""The rollout gates over many seeded runs, checked as a rollout checks them (after every request, or
at every evaluation), with the rates printed: false alarms for an equal candidate, detection of a
worse one, and how many requests a decision took."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.registry.gates import AgreementGate, LatencyGate, RateGate, Verdict, wilson_interval

RUNS = 400


def test_the_wilson_interval_matches_its_textbook_values() -> None:
    low, high = wilson_interval(95, 100)
    assert low == pytest.approx(0.8882, abs=1e-4)
    assert high == pytest.approx(0.9785, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="successes must be within"):
        wilson_interval(11, 10)


def rate_run(
    gate: RateGate, rng: np.random.Generator, share: float, base: float, candidate: float, requests: int
) -> tuple[Verdict, int]:
    """One canary stage: each request goes to the candidate with probability ``share``; the gate is
    asked after every candidate request. The verdict, and the candidate requests it took."""
    to_candidate = rng.random(requests) < share
    failed = rng.random(requests) < np.where(to_candidate, candidate, base)
    c_trials = np.cumsum(to_candidate)[to_candidate]
    c_fail = np.cumsum(failed & to_candidate)[to_candidate]
    b_trials = np.cumsum(~to_candidate)[to_candidate]
    b_fail = np.cumsum(failed & ~to_candidate)[to_candidate]
    share_now = c_trials / (c_trials + b_trials)
    worse = gate.ratio * share_now / (gate.ratio * share_now + 1 - share_now)
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = np.where(
            b_trials > 0, c_fail * np.log(worse / share_now) + b_fail * np.log((1 - worse) / (1 - share_now)), 0.0
        )
    upper, lower = np.log(1 / gate.alpha), np.log(gate.beta)
    crossed = np.flatnonzero((llr >= upper) | ((llr <= lower) & (c_trials >= gate.min_trials)))
    if not len(crossed):
        return Verdict.CONTINUE, int(c_trials[-1]) if len(c_trials) else 0
    first = crossed[0]
    verdict = gate.verdict(int(c_fail[first]), int(c_trials[first]), int(b_fail[first]), int(b_trials[first]))
    assert verdict is not Verdict.CONTINUE  # the vectorised crossing is the gate's own
    return verdict, int(c_trials[first])


def rates(outcomes: list[tuple[Verdict, int]]) -> dict[str, float]:
    decided = [n for v, n in outcomes if v is not Verdict.CONTINUE]
    return {
        "fail": sum(v is Verdict.FAIL for v, _ in outcomes) / len(outcomes),
        "pass": sum(v is Verdict.PASS for v, _ in outcomes) / len(outcomes),
        "median requests": float(np.median(decided)) if decided else float("nan"),
    }


@pytest.mark.parametrize("share", [0.01, 0.05, 0.2, 0.5])
def test_the_rate_gate_rarely_fails_an_equal_candidate_and_catches_a_worse_one(
    share: float, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = RateGate(ratio=2.0, alpha=0.05, beta=0.2)
    equal = rates([rate_run(gate, np.random.default_rng(s), share, 0.01, 0.01, 60_000) for s in range(RUNS)])
    worse = rates([rate_run(gate, np.random.default_rng(s), share, 0.01, 0.03, 60_000) for s in range(RUNS)])
    with capsys.disabled():
        print(
            f"\nrate gate, share {share:.0%}, {RUNS} runs: equal candidate (1 % vs 1 %) {equal}; "
            f"worse candidate (3 % vs 1 %) {worse}"
        )
    assert equal["fail"] <= 0.05
    assert worse["fail"] >= 0.8


def test_the_rate_gate_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="ratio must be > 1"):
        RateGate(ratio=1.0)
    with pytest.raises(ValueError, match="alpha must be within"):
        RateGate(alpha=0.5)


def agreement_run(gate: AgreementGate, rng: np.random.Generator, rate: float, requests: int) -> tuple[Verdict, int]:
    agreed = np.cumsum(rng.random(requests) < rate)
    for n in range(1, requests + 1):
        verdict = gate.verdict(int(agreed[n - 1]), n)
        if verdict is not Verdict.CONTINUE:
            return verdict, n
    return Verdict.CONTINUE, requests


@pytest.mark.parametrize(("agreement", "expected"), [(0.99, "pass"), (0.97, "pass"), (0.90, "fail"), (0.3, "fail")])
def test_the_agreement_gate_passes_an_agreeing_shadow_and_stops_a_wrong_one(
    agreement: float, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = AgreementGate(floor=0.95, min_requests=1000)
    found = rates([agreement_run(gate, np.random.default_rng(s), agreement, 5000) for s in range(RUNS // 4)])
    with capsys.disabled():
        print(f"\nagreement gate, floor 0.95, true agreement {agreement}: {found}")
    assert found[expected] >= 0.95
    if agreement == 0.3:
        assert found["median requests"] < 20  # a silently wrong candidate is stopped at once


def latency_run(gate: LatencyGate, rng: np.random.Generator, slowdown: float, looks: int) -> Verdict:
    """Latencies arrive 200 at a time on each side; the gate is asked after each batch."""
    candidate: list[float] = []
    production: list[float] = []
    for _ in range(looks):
        production += list(rng.lognormal(np.log(0.01), 0.5, 200))
        candidate += list(slowdown * rng.lognormal(np.log(0.01), 0.5, 200))
        verdict = gate.verdict(candidate, production, rng)
        if verdict is not Verdict.CONTINUE:
            return verdict
    return Verdict.CONTINUE


@pytest.mark.parametrize(("slowdown", "expected", "floor"), [(1.0, Verdict.PASS, 0.8), (3.0, Verdict.FAIL, 0.99)])
def test_the_latency_gate_tells_a_slower_candidate(
    slowdown: float, expected: Verdict, floor: float, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = LatencyGate(max_ratio=1.2, min_samples=200)
    outcomes = [latency_run(gate, np.random.default_rng(s), slowdown, looks=10) for s in range(RUNS // 4)]
    shares = {v.value: sum(o is v for o in outcomes) / len(outcomes) for v in Verdict}
    with capsys.disabled():
        print(f"\nlatency gate, candidate {slowdown}x production, up to 10 looks: {shares}")
    assert shares[expected.value] >= floor
    if slowdown == 1.0:
        assert shares["fail"] <= 0.05

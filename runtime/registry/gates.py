"""The statistics that decide whether a candidate version may take more traffic.

Each gate answers :class:`Verdict` ``PASS``, ``FAIL`` or ``CONTINUE`` (not enough evidence yet) from
counts and samples gathered as requests arrive. They are built to be asked after every request
without the false alarms that repeated looks at a fixed-threshold test produce:

* :class:`RateGate` -- Wald's sequential probability ratio test on the candidate's failure rate
  (errors, fallbacks) against production's over the same period. It needs no estimate of the base
  rate: given how many requests each side answered, each failure came from the candidate with
  probability ``share = n_c / (n_c + n_p)`` if the candidate fails as often as production, and
  ``ratio * share / (ratio * share + 1 - share)`` if it fails ``ratio`` times as often. The
  log-likelihood ratio of the failures' origins is compared with the bounds ``log(1 / alpha)`` and
  ``log(beta)``: checked after every request, it fails an equal candidate with a chance of at most
  ``alpha`` and passes a worse one with at most ``beta`` (Wald's inequalities; his approximate bounds
  ``log((1 - beta) / alpha)`` allowed up to ``alpha / (1 - beta)``, 5.25 % of runs at a 50 % share).
  (Testing an absolute rise against production's *estimated* rate instead failed an equal candidate
  in 11 % of runs at a 20 % share: the estimate's own noise.)
* :class:`AgreementGate` -- the shadow's agreement with production: PASS once the Wilson lower bound
  of the agreement rate reaches the policy's floor with enough requests, FAIL once the Wilson upper
  bound at a stricter confidence falls below it (checked after every request, a 95 % bound failed a
  candidate agreeing 97 % of the time against a 0.95 floor in 11 % of runs; at 99.9 %, rarely).
* :class:`LatencyGate` -- the ratio of the candidate's p95 latency to production's, with a bootstrap
  confidence interval: PASS when the interval lies below the allowed ratio, FAIL when a stricter
  interval lies above it (it is looked at again and again).

Nothing here reads a clock or draws randomness it was not given, so every decision can be replayed
(tests/runtime/registry/test_gates.py runs each gate over many seeded runs and reports its rates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

import numpy as np


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    CONTINUE = "continue"
    """Not enough evidence either way yet."""


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (two-sided at ``confidence``)."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be within [0, trials={trials}], got {successes}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class RateGate:
    """Wald's SPRT: does the candidate fail ``ratio`` times as often as production?"""

    ratio: float = 2.0
    """How many times production's failure rate is worth stopping a rollout for."""
    alpha: float = 0.05
    """Chance of failing a candidate as good as production."""
    beta: float = 0.2
    """Chance of passing a candidate ``ratio`` times worse."""
    min_trials: int = 1
    """Requests the candidate must have answered before a PASS (a FAIL may come sooner)."""

    def __post_init__(self) -> None:
        if not self.ratio > 1:
            raise ValueError(f"ratio must be > 1, got {self.ratio!r}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not 0 < value < 0.5:
                raise ValueError(f"{name} must be within (0, 0.5), got {value!r}")

    def llr(self, failures: int, trials: int, base_failures: int, base_trials: int) -> float:
        """The log-likelihood ratio (worse : as good) of which side the failures came from: the
        candidate failed ``failures`` times in ``trials``, production ``base_failures`` in
        ``base_trials``, over the same period."""
        if trials <= 0 or base_trials <= 0:
            return 0.0
        share = trials / (trials + base_trials)
        worse = self.ratio * share / (self.ratio * share + 1 - share)
        return failures * math.log(worse / share) + base_failures * math.log((1 - worse) / (1 - share))

    def verdict(self, failures: int, trials: int, base_failures: int, base_trials: int) -> Verdict:
        llr = self.llr(failures, trials, base_failures, base_trials)
        if llr >= math.log(1 / self.alpha):
            return Verdict.FAIL
        if llr <= math.log(self.beta) and trials >= self.min_trials:
            return Verdict.PASS
        return Verdict.CONTINUE


@dataclass(frozen=True, slots=True)
class AgreementGate:
    """The shadow agrees with production often enough, with ``min_requests`` compared."""

    floor: float = 0.95
    """The agreement rate the candidate must reach (its Wilson lower bound must)."""
    min_requests: int = 1000
    confidence: float = 0.95
    """Of the lower bound that passes."""
    fail_confidence: float = 0.999
    """Of the upper bound that fails: stricter, as it is looked at after every request."""

    def verdict(self, agreed: int, compared: int) -> Verdict:
        if wilson_interval(agreed, compared, self.fail_confidence)[1] < self.floor:
            return Verdict.FAIL
        if compared >= self.min_requests and wilson_interval(agreed, compared, self.confidence)[0] >= self.floor:
            return Verdict.PASS
        return Verdict.CONTINUE


@dataclass(frozen=True, slots=True)
class LatencyGate:
    """The candidate's p95 latency is at most ``max_ratio`` times production's."""

    max_ratio: float = 1.2
    min_samples: int = 200
    """Latencies each side needs before any verdict."""
    confidence: float = 0.9
    """Of the interval that passes (its upper end below ``max_ratio``)."""
    fail_confidence: float = 0.998
    """Of the interval that fails (its lower end above ``max_ratio``)."""
    resamples: int = 1000

    def ratios(self, candidate: Sequence[float], production: Sequence[float], rng: np.random.Generator) -> np.ndarray:
        """Bootstrap draws of p95(candidate) / p95(production) from latency samples."""
        c, p = np.asarray(candidate, dtype=np.float64), np.asarray(production, dtype=np.float64)
        c_draws = np.percentile(rng.choice(c, size=(self.resamples, len(c))), 95, axis=1)
        p_draws = np.percentile(rng.choice(p, size=(self.resamples, len(p))), 95, axis=1)
        found: np.ndarray = c_draws / np.maximum(p_draws, 1e-12)
        return found

    def interval(
        self, candidate: Sequence[float], production: Sequence[float], rng: np.random.Generator
    ) -> tuple[float, float]:
        """A bootstrap confidence interval (at ``confidence``) of p95(candidate) / p95(production)."""
        tail = (1 - self.confidence) / 2 * 100
        low, high = np.percentile(self.ratios(candidate, production, rng), [tail, 100 - tail])
        return float(low), float(high)

    def verdict(self, candidate: Sequence[float], production: Sequence[float], rng: np.random.Generator) -> Verdict:
        if min(len(candidate), len(production)) < self.min_samples:
            return Verdict.CONTINUE
        return self._judge(self.ratios(candidate, production, rng))

    def verdict_histograms(
        self, candidate: Sequence[float], production: Sequence[float], rng: np.random.Generator
    ) -> Verdict:
        """The verdict for latencies given as counts per bucket of :data:`LATENCY_EDGES`."""
        if min(sum(candidate), sum(production)) < self.min_samples:
            return Verdict.CONTINUE
        return self._judge(histogram_p95_ratios(candidate, production, self.resamples, rng))

    def _judge(self, ratios: np.ndarray) -> Verdict:
        fail_low = np.percentile(ratios, (1 - self.fail_confidence) / 2 * 100)
        if fail_low > self.max_ratio:
            return Verdict.FAIL
        if np.percentile(ratios, 100 - (1 - self.confidence) / 2 * 100) <= self.max_ratio:
            return Verdict.PASS
        return Verdict.CONTINUE


LATENCY_EDGES = tuple(float(x) for x in np.geomspace(1e-4, 60.0, 274))
"""Upper edges (seconds) of the latency histograms workers add up: 100 us to 60 s in steps of 5 % (a
p95 read from them is within 5 % of the true one; with 15 % steps, an equal candidate's p95 often read
a whole step higher than production's, against an allowed ratio of 1.2)."""


def latency_bucket(seconds: float) -> int:
    """The index of the histogram bucket that holds ``seconds`` (the last bucket holds everything longer)."""
    return min(int(np.searchsorted(LATENCY_EDGES, seconds)), len(LATENCY_EDGES) - 1)


def latency_histogram(seconds: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts per bucket of :data:`LATENCY_EDGES`."""
    indices = np.minimum(np.searchsorted(LATENCY_EDGES, np.asarray(seconds)), len(LATENCY_EDGES) - 1)
    return np.bincount(indices, minlength=len(LATENCY_EDGES))


def histogram_p95(counts: Sequence[float]) -> float:
    """The p95 of latencies given as counts per bucket of :data:`LATENCY_EDGES` (the upper edge of the
    bucket that holds it; ``nan`` for no latencies)."""
    weights = np.asarray(counts, dtype=np.float64)
    n = float(weights.sum())
    if n <= 0:
        return math.nan
    return LATENCY_EDGES[int(np.searchsorted(np.cumsum(weights), math.ceil(0.95 * n)))]


def histogram_p95_ratios(
    candidate: Sequence[float], production: Sequence[float], resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap draws of the p95 ratio for latencies given as bucket counts. A resample's p95 is at
    most bucket ``b`` exactly when at least ``ceil(0.95 n)`` of its ``n`` draws fall at or below ``b``,
    a binomial event: so each side's bootstrap distribution is known in closed form (normal
    approximation of the binomial) and sampled directly, at a cost that grows with neither ``n`` nor
    the number of resamples."""
    ratios: np.ndarray = _p95_draws(candidate, resamples, rng) / _p95_draws(production, resamples, rng)
    return ratios


def _p95_draws(counts: Sequence[float], resamples: int, rng: np.random.Generator) -> np.ndarray:
    weights = np.asarray(counts, dtype=np.float64)
    occupied = np.flatnonzero(weights)
    n = float(weights.sum())
    share = np.minimum(np.cumsum(weights[occupied]) / n, 1.0)  # F(b): the share at or below bucket b
    rank = math.ceil(0.95 * n)
    spread = np.sqrt(np.maximum(n * share * (1 - share), 1e-12))
    z = (rank - 0.5 - n * share) / spread
    at_most = np.array([0.5 * math.erfc(v / math.sqrt(2)) for v in z])  # P(resampled p95 <= edge b)
    at_most[-1] = 1.0
    found: np.ndarray = np.asarray(LATENCY_EDGES)[occupied][np.searchsorted(at_most, rng.random(resamples))]
    return found

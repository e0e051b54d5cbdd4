from __future__ import annotations

import argparse

import pytest

from loadtests import gate

SLO = {"p95_ms": 50.0, "min_rps": 100.0, "max_error_rate": 0.01}


def stats(requests: int, failures: int, p95: float) -> dict[str, str]:
    return {"Request Count": str(requests), "Failure Count": str(failures), "95%": str(p95)}


def test_a_run_within_every_slo_passes() -> None:
    checks = gate.evaluate(SLO, stats(3000, 3, 20), seconds=10)
    assert [c.ok for c in checks] == [True, True, True]


def test_each_missed_slo_fails_on_its_own() -> None:
    assert [c.ok for c in gate.evaluate(SLO, stats(3000, 3, 80), 10)] == [False, True, True]
    assert [c.ok for c in gate.evaluate(SLO, stats(500, 0, 20), 10)] == [True, False, True]
    assert [c.ok for c in gate.evaluate(SLO, stats(3000, 60, 20), 10)] == [True, True, False]
    assert not any(c.ok for c in gate.evaluate(SLO, stats(0, 0, 0), 10))


def test_durations_parse_like_locust() -> None:
    assert gate._seconds("20s") == 20
    assert gate._seconds("2m") == 120
    assert gate._seconds("15") == 15
    with pytest.raises(argparse.ArgumentTypeError):
        gate._seconds("soon")


def test_outcomes_are_summed_across_pipelines_and_workers() -> None:
    text = (
        'ballast_requests_total{outcome="success",pipeline="fraud"} 7.0\n'
        'ballast_requests_total{outcome="fallback",pipeline="fraud"} 3.0\n'
        'ballast_requests_total{outcome="success",pipeline="other"} 1.0\n'
        'ballast_request_duration_seconds_count{outcome="success",pipeline="fraud",stage="x"} 7.0\n'
    )
    assert gate.parse_outcomes(text) == {"success": 8.0, "fallback": 3.0}

"""What drift watching costs the fraud chain's throughput: fraud servers with drift off and on
(``BALLAST_DRIFT_ENABLED``), the audit trail off in both, at saturation, in interleaved rounds.

    python -m benchmarks.drift_cost [--rounds 6] [--seconds 10]    (make drift-cost)

The harness is the audit benchmark's (benchmarks/audit_cost.py): each server pinned to CPU 0, wrk
on CPU 1, closed loop, one transaction per POST /score, each variant first in turn. On a request
the drift hook copies the input row and the primary's outputs into their windows; each window of
1,000 rows is judged in a thread of the worker (its tests, and the first time the bootstrap of the
chance distances), which this figure includes. Reported per variant: req/s, p50 and p95, the
server's CPU per answer, and the ratio of req/s with drift to without (target: >= 0.97).
Result: benchmarks/results/drift-cost.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import paired
from .audit_cost import Round, interleave
from .overload import Target, start_pinned

OFF, ON = "drift off", "drift on"
VARIANTS = {OFF: ["BALLAST_DRIFT_ENABLED=false"], ON: ["BALLAST_DRIFT_ENABLED=true"]}


def run(args: argparse.Namespace, work: Path) -> dict[str, list[Round]]:
    targets: dict[str, Target] = {}
    try:
        for index, label in enumerate(VARIANTS):
            variant = work / f"v{index}"
            variant.mkdir()
            settings = [f"BALLAST_STATE_PATH={variant / 'lifecycle.sqlite'}", *VARIANTS[label]]
            targets[label] = start_pinned("fraud", variant, settings, "drift-cost")
        for target in targets.values():
            target.server.wait(target.path, target.body.read_bytes())
        return interleave(targets, args)
    finally:
        for target in targets.values():
            target.server.stop()


def report(results: dict[str, list[Round]], args: argparse.Namespace, started: str) -> str:
    return paired.report(
        results,
        args,
        started,
        module="drift_cost",
        title="What drift watching costs",
        setup=f"Fraud servers (one worker each, audit trail off) with drift off and on, each on CPU 0, loaded one "
        f"at a time; wrk on CPU 1, closed loop, {args.connections} connections, POST /score with one transaction.",
        pair=(OFF, ON),
        compared=("req/s with drift / without", "more than without"),
        target=0.97,
    )


if __name__ == "__main__":
    paired.main(__doc__, run, report, "drift-cost.md")

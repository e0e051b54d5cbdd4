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
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .audit_cost import Round, interleave, round_arguments, smoke_sized
from .overload import RESULTS, Target, start_pinned

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
    def mid(label: str, key: str) -> float:
        return float(np.median([getattr(r, key) for r in results[label]]))

    ratios = [on.rps / off.rps for off, on in zip(results[OFF], results[ON], strict=True)]
    ratio = float(np.median(ratios))
    cpu = [on.cpu_us - off.cpu_us for off, on in zip(results[OFF], results[ON], strict=True)]
    lines = [
        f"# What drift watching costs{' (smoke: not a measurement)' if args.smoke else ''}",
        "",
        f"`python -m benchmarks.drift_cost {' '.join(sys.argv[1:])}`, {started}; {platform.machine()}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}.",
        "",
        f"Fraud servers (one worker each, audit trail off) with drift off and on, each on CPU 0, loaded one at "
        f"a time; wrk on CPU 1, closed loop, {args.connections} connections, POST /score with one transaction. "
        f"{args.rounds} rounds of {args.seconds} s per variant, interleaved, after {args.warmup_rounds} warm-up "
        f"round(s); medians over rounds.",
        "",
        "| variant | req/s | p50 ms | p95 ms | CPU per answer | answers |",
        "|---|---|---|---|---|---|",
        *(
            f"| {label} | {mid(label, 'rps'):,.0f} | {mid(label, 'p50_ms'):.2f} | {mid(label, 'p95_ms'):.2f} | "
            f"{mid(label, 'cpu_us'):.0f} us | {mid(label, 'answers'):,.0f} |"
            for label in results
        ),
        "",
        f"req/s with drift / without, per round: {', '.join(f'{r:.3f}' for r in ratios)}; median **{ratio:.3f}** "
        f"({'meets' if ratio >= 0.97 else 'MISSES'} the target >= 0.97). CPU per answer more than without, per "
        f"round: {', '.join(f'{d:+.0f}' for d in cpu)} us, median {float(np.median(cpu)):+.0f} us.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    round_arguments(parser)
    args = parser.parse_args()
    smoke_sized(args)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="ballast-drift-cost-"))
    try:
        results = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(results, args, started)
    print(text)
    if args.smoke:
        if any(r.not_2xx or not r.answers for label in results for r in results[label]):
            sys.exit("smoke: a variant answered badly or not at all")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "drift-cost.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

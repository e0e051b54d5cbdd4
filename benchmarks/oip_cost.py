"""What the Open Inference Protocol's JSON route costs against the service's own JSON route: one
tensor server (the heavy MLP of benchmarks/compare.py behind the tensor service), the same row sent
as ``POST /predict`` (``{input: [[...]]}``) and as ``POST /v2/models/bench-mlp/infer`` (a V2 JSON
request), in interleaved rounds at saturation.

    python -m benchmarks.oip_cost [--rounds 6] [--seconds 10]    (make oip-cost)

The harness is the audit benchmark's (benchmarks/audit_cost.py): the server pinned to CPU 0, wrk on
CPU 1, closed loop, each route first in turn. Reported per route: req/s, p50 and p95, the server's
CPU per answer, and the ratio of V2's req/s to the own route's (target: >= 0.9).
Result: benchmarks/results/oip-cost.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .audit_cost import Round, interleave, round_arguments, smoke_sized
from .overload import RESULTS, start_pinned

OWN, V2 = "own JSON route", "V2 JSON route"
MODEL = "bench-mlp"


def v2_body(own: Path, work: Path) -> Path:
    """The own route's one-row body (``{input: [[...]]}``) as a V2 inference request."""
    [(name, rows)] = json.loads(own.read_bytes()).items()
    array = np.asarray(rows, dtype=np.float32)
    tensor = {"name": name, "datatype": "FP32", "shape": list(array.shape), "data": array.ravel().tolist()}
    path = work / "v2.json"
    path.write_text(json.dumps({"inputs": [tensor]}))
    return path


def run(args: argparse.Namespace, work: Path) -> dict[str, list[Round]]:
    own = start_pinned("mlp", work, [f"BALLAST_STATE_PATH={work / 'lifecycle.sqlite'}"], "oip-cost")
    targets = {OWN: own, V2: replace(own, path=f"/v2/models/{MODEL}/infer", body=v2_body(own.body, work))}
    try:
        for target in targets.values():
            target.server.wait(target.path, target.body.read_bytes())
        return interleave(targets, args)
    finally:
        own.server.stop()


def report(results: dict[str, list[Round]], args: argparse.Namespace, started: str) -> str:
    def mid(label: str, key: str) -> float:
        return float(np.median([getattr(r, key) for r in results[label]]))

    ratios = [v2.rps / own.rps for own, v2 in zip(results[OWN], results[V2], strict=True)]
    ratio = float(np.median(ratios))
    cpu = [v2.cpu_us - own.cpu_us for own, v2 in zip(results[OWN], results[V2], strict=True)]
    lines = [
        f"# What the Open Inference Protocol's JSON route costs{' (smoke: not a measurement)' if args.smoke else ''}",
        "",
        f"`python -m benchmarks.oip_cost {' '.join(sys.argv[1:])}`, {started}; {platform.machine()}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}.",
        "",
        f"One tensor server (the heavy MLP, one worker) on CPU 0; wrk on CPU 1, closed loop, {args.connections} "
        f"connections, one row per request, to its own route and to the V2 route in turn. {args.rounds} rounds of "
        f"{args.seconds} s per route, interleaved, after {args.warmup_rounds} warm-up round(s); medians over rounds.",
        "",
        "| route | req/s | p50 ms | p95 ms | CPU per answer | answers |",
        "|---|---|---|---|---|---|",
        *(
            f"| {label} | {mid(label, 'rps'):,.0f} | {mid(label, 'p50_ms'):.2f} | {mid(label, 'p95_ms'):.2f} | "
            f"{mid(label, 'cpu_us'):.0f} us | {mid(label, 'answers'):,.0f} |"
            for label in results
        ),
        "",
        f"V2 req/s / own route's, per round: {', '.join(f'{r:.3f}' for r in ratios)}; median **{ratio:.3f}** "
        f"({'meets' if ratio >= 0.9 else 'MISSES'} the target >= 0.9). CPU per answer more than the own route, per "
        f"round: {', '.join(f'{d:+.0f}' for d in cpu)} us, median {float(np.median(cpu)):+.0f} us.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    round_arguments(parser)
    args = parser.parse_args()
    smoke_sized(args)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="ballast-oip-cost-"))
    try:
        results = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(results, args, started)
    print(text)
    if args.smoke:
        if any(r.not_2xx or not r.answers for label in results for r in results[label]):
            sys.exit("smoke: a route answered badly or not at all")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "oip-cost.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

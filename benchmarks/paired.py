"""What the two-variant interleaved benchmarks share (benchmarks/drift_cost.py, benchmarks/oip_cost.py):
the report of a variant against a baseline, and the command line around a run."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .audit_cost import Round, round_arguments, smoke_sized
from .overload import RESULTS


def report(
    results: dict[str, list[Round]],
    args: argparse.Namespace,
    started: str,
    *,
    module: str,
    title: str,
    setup: str,
    column: str = "variant",
    pair: tuple[str, str],
    compared: tuple[str, str],
    target: float,
) -> str:
    """The result page of ``python -m benchmarks.<module>``: ``title``; the command and machine;
    ``setup`` (how the servers ran); a table per variant (``column``: what a variant is); the ratio
    of ``pair[1]``'s req/s to ``pair[0]``'s per round and its median against ``target``, and the
    CPU per answer it adds. ``compared``: how the ratio and the CPU difference
    are named (``"req/s with drift / without"``, ``"more than without"``)."""

    def mid(label: str, key: str) -> float:
        return float(np.median([getattr(r, key) for r in results[label]]))

    base, other = pair
    ratios = [o.rps / b.rps for b, o in zip(results[base], results[other], strict=True)]
    ratio = float(np.median(ratios))
    cpu = [o.cpu_us - b.cpu_us for b, o in zip(results[base], results[other], strict=True)]
    lines = [
        f"# {title}{' (smoke: not a measurement)' if args.smoke else ''}",
        "",
        f"`python -m benchmarks.{module} {' '.join(sys.argv[1:])}`, {started}; {platform.machine()}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}.",
        "",
        f"{setup} {args.rounds} rounds of {args.seconds} s per {column}, interleaved, after "
        f"{args.warmup_rounds} warm-up round(s); medians over rounds.",
        "",
        f"| {column} | req/s | p50 ms | p95 ms | CPU per answer | answers |",
        "|---|---|---|---|---|---|",
        *(
            f"| {label} | {mid(label, 'rps'):,.0f} | {mid(label, 'p50_ms'):.2f} | {mid(label, 'p95_ms'):.2f} | "
            f"{mid(label, 'cpu_us'):.0f} us | {mid(label, 'answers'):,.0f} |"
            for label in results
        ),
        "",
        f"{compared[0]}, per round: {', '.join(f'{r:.3f}' for r in ratios)}; median **{ratio:.3f}** "
        f"({'meets' if ratio >= target else 'MISSES'} the target >= {target}). CPU per answer {compared[1]}, per "
        f"round: {', '.join(f'{d:+.0f}' for d in cpu)} us, median {float(np.median(cpu)):+.0f} us.",
    ]
    return "\n".join(lines)


def main(
    doc: str | None,
    run: Callable[[argparse.Namespace, Path], dict[str, list[Round]]],
    report: Callable[[dict[str, list[Round]], argparse.Namespace, str], str],
    result: str | Callable[[argparse.Namespace], str],
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Parse the round arguments (and the harness's own, ``arguments``), run in a scratch directory,
    print the report; write it to ``benchmarks/results/<result>`` (a name, or one made from the
    arguments) unless ``--smoke``, which exits 1 when a variant answered badly (beyond the
    refusals the server counted) or not at all."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    round_arguments(parser)
    if arguments is not None:
        arguments(parser)
    args = parser.parse_args()
    smoke_sized(args)
    if callable(result):
        result = result(args)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix=f"ballast-{Path(result).stem}-"))
    try:
        results = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(results, args, started)
    print(text)
    if args.smoke:
        # a 503 the server counted as a refusal is overload answered as designed, not a fault
        if any(r.not_2xx > r.refused or not r.answers for label in results for r in results[label]):
            sys.exit("smoke: a variant answered badly or not at all")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / result).write_text(text + "\n")

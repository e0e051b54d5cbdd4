"""What the Open Inference Protocol's JSON route costs against the service's own JSON route: one
tensor server (the heavy MLP of benchmarks/compare.py, or the digits model, behind the tensor
service), the same row sent as ``POST /predict`` (``{input: [[...]]}``) and as
``POST /v2/models/<model>/infer`` (a V2 JSON request), in interleaved rounds at saturation. The
digits model's 64-float row leaves the request's fixed costs most of the work.

    python -m benchmarks.oip_cost [--model mlp|digits] [--rounds 6] [--seconds 10]    (make oip-cost)

The harness is the audit benchmark's (benchmarks/audit_cost.py): the server pinned to CPU 0, wrk on
CPU 1, closed loop, each route first in turn. Reported per route: req/s, p50 and p95, the server's
CPU per answer, and the ratio of V2's req/s to the own route's (target: >= 0.9).
Result: benchmarks/results/oip-cost.md (the digits model's: oip-cost-digits.md).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import paired
from .audit_cost import Round, interleave
from .overload import start_pinned

OWN, V2 = "own JSON route", "V2 JSON route"
MODELS = {"mlp": "bench-mlp", "digits": "digits-mlp"}
"""Each ``--model``'s name in the model store (and so at ``/v2/models/...``)."""


def v2_body(own: Path, work: Path) -> Path:
    """The own route's one-row body (``{input: [[...]]}``) as a V2 inference request."""
    [(name, rows)] = json.loads(own.read_bytes()).items()
    array = np.asarray(rows, dtype=np.float32)
    tensor = {"name": name, "datatype": "FP32", "shape": list(array.shape), "data": array.ravel().tolist()}
    path = work / "v2.json"
    path.write_text(json.dumps({"inputs": [tensor]}))
    return path


def run(args: argparse.Namespace, work: Path) -> dict[str, list[Round]]:
    own = start_pinned(args.model, work, [f"BALLAST_STATE_PATH={work / 'lifecycle.sqlite'}"], "oip-cost")
    path = f"/v2/models/{MODELS[args.model]}/infer"
    targets = {OWN: own, V2: replace(own, path=path, body=v2_body(own.body, work))}
    try:
        for target in targets.values():
            target.server.wait(target.path, target.body.read_bytes())
        return interleave(targets, args)
    finally:
        own.server.stop()


def report(results: dict[str, list[Round]], args: argparse.Namespace, started: str) -> str:
    model = "the heavy MLP" if args.model == "mlp" else "the digits model"
    return paired.report(
        results,
        args,
        started,
        module="oip_cost",
        title="What the Open Inference Protocol's JSON route costs",
        setup=f"One tensor server ({model}, one worker) on CPU 0; wrk on CPU 1, closed loop, "
        f"{args.connections} connections, one row per request, to its own route and to the V2 route in turn.",
        pair=(OWN, V2),
        compared=("V2 req/s / own route's", "more than the own route"),
        target=0.9,
        column="route",
    )


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=sorted(MODELS), default="mlp", help="the tensor server's model")


if __name__ == "__main__":
    paired.main(
        __doc__, run, report, lambda args: "oip-cost.md" if args.model == "mlp" else "oip-cost-digits.md", arguments
    )

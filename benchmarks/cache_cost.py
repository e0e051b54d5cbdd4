"""What the result cache costs and saves per request, in process, at batch 1: ``Pipeline.predict``
with no cache, with a cache that never holds the input (every request new: digest, lookup, copy in,
and in steady state an eviction), and with a cache that holds it (digest and lookup only).

Requests are sequential, so medians compare latency directly. Variants run in interleaved rounds
in one run, each first in turn (this machine's speed drifts 15-20 % between quiet repeats, and
within a round the order alone moved the heavy model's medians by 10 %); compare within one run only.

    python -m benchmarks.cache_cost            # full run, writes benchmarks/results/cache_cost.md
    python -m benchmarks.cache_cost --smoke    # a few hundred calls: checks it works
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
from collections.abc import Awaitable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from prometheus_client import CollectorRegistry

from runtime import OnnxModel, Pipeline, RuntimeMetrics, Settings, TensorSchema
from runtime.engine.cache import ENTRY_OVERHEAD_BYTES, ResultCache

from .mlp import build_mlp
from .runtime_overhead import MODELS, percentile, timed_async

RESULTS = Path(__file__).parent / "results"
ENTRIES = 1000
"""Small enough that the miss variant evicts in steady state, as a full cache does."""


async def measure(path: Path, widths: tuple[int, ...], rounds: int, per_round: int) -> dict[str, list[float]]:
    entry = ENTRY_OVERHEAD_BYTES + 4 * widths[-1]  # one row of float32 outputs
    settings = Settings(warmup_runs=5)
    pipelines: dict[str, Pipeline] = {}
    for label, cached in (("no cache", False), ("cache, every input new", True), ("cache, input seen", True)):
        model = OnnxModel.from_path(path, name="bench", version="1")
        cache = ResultCache("0" * 64, max_bytes=ENTRIES * entry, ttl_s=300) if cached else None
        pipeline = Pipeline.build(
            "bench",
            models=[model],
            schema=TensorSchema(model.signature, max_rows=64),
            settings=settings,
            metrics=RuntimeMetrics(CollectorRegistry()),
            cache=cache,
        )
        await pipeline.start()
        pipelines[label] = pipeline
    width = widths[0]
    rng = np.random.default_rng(0)
    seen = {"x": rng.standard_normal((1, width)).astype(np.float32)}
    samples: dict[str, list[float]] = {k: [] for k in pipelines}
    labels = list(pipelines)
    for round_ in range(rounds):
        fresh = iter(rng.standard_normal((per_round * 3, 1, width)).astype(np.float32))
        for label in labels[round_ % 3 :] + labels[: round_ % 3]:  # each goes first in turn
            pipeline = pipelines[label]

            def call(p: Pipeline = pipeline, repeat: bool = label == "cache, input seen") -> Awaitable[object]:
                return p.predict(seen if repeat else {"x": next(fresh)})  # noqa: B023 -- used within the round

            samples[label] += await timed_async(call, per_round)
    hits = pipelines["cache, input seen"].cache
    new = pipelines["cache, every input new"].cache
    assert hits is not None
    assert new is not None
    assert (len(hits), len(new)) == (1, ENTRIES)
    for pipeline in pipelines.values():
        await pipeline.close()
    return samples


def report(results: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"onnxruntime {ort.__version__}, Python {platform.python_version()}",
        "",
        "| model | path | p50 µs | p99 µs | against no cache, p50 µs |",
        "|---|---|---|---|---|",
    ]
    for model, samples in results.items():
        base = statistics.median(samples["no cache"])
        for label, values in samples.items():
            delta = "" if label == "no cache" else f"{(statistics.median(values) - base) * 1e6:+.1f}"
            lines.append(
                f"| {model} | {label} | {statistics.median(values) * 1e6:.1f} | "
                f"{percentile(values, 99) * 1e6:.1f} | {delta} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a short run that checks the harness works")
    args = parser.parse_args()
    rounds, per_round = (2, ENTRIES) if args.smoke else (12, 2000)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, widths in MODELS.items():
            if args.smoke and widths[0] > 64:
                continue
            path = build_mlp(Path(tmp) / f"{widths[0]}.onnx", widths)
            results[name] = asyncio.run(measure(path, widths, rounds, per_round))
    text = report(results)
    print(text)
    if not args.smoke:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "cache_cost.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

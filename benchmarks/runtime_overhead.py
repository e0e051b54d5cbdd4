"""What the runtime adds per request, in process, at batch 1: ``Pipeline.predict`` (validation,
batcher, chain, breaker, hooks, Prometheus metrics) against ``session.run`` on the same session.

Requests are sequential (one at a time), so the difference of the medians is the runtime's own
latency. The variants are measured in interleaved rounds in one run, because this machine's
speed drifts by 15-20 % between quiet repeats; compare numbers within one run only.

    python -m benchmarks.runtime_overhead            # full run, writes benchmarks/results/
    python -m benchmarks.runtime_overhead --smoke    # a few hundred calls: checks it works
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from prometheus_client import CollectorRegistry

from runtime import OnnxModel, Pipeline, RuntimeMetrics, SessionConfig, Settings, TensorSchema

from .mlp import build_mlp

RESULTS = Path(__file__).parent / "results"
MODELS = {"digits-mlp 64-128-10": (64, 128, 10), "mlp 512-2048-2048-1000": (512, 2048, 2048, 1000)}


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


async def timed_async(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


def timed(call: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


async def measure(path: Path, rounds: int, per_round: int) -> dict[str, list[float]]:
    settings = Settings(warmup_runs=5)
    variants: dict[str, Pipeline] = {}
    for label, inline in (
        ("ballast (inline small runs)", settings.inline_max_us),
        ("ballast (worker thread)", 0.0),
    ):
        config = dataclasses.replace(SessionConfig.from_settings(settings), inline_max_s=inline / 1e6)
        model = OnnxModel.from_path(path, name="bench", version="1", config=config)
        pipeline = Pipeline.build(
            "bench",
            models=[model],
            schema=TensorSchema(model.signature, max_rows=64),
            settings=settings,
            metrics=RuntimeMetrics(CollectorRegistry()),
        )
        await pipeline.start()
        variants[label] = pipeline
    options = SessionConfig().session_options()
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, session.get_inputs()[0].shape[1])).astype(np.float32)
    payload = {"x": x}
    samples: dict[str, list[float]] = {"session.run": [], **{k: [] for k in variants}}
    timed(lambda: session.run(None, payload), per_round)  # warm
    for _ in range(rounds):
        samples["session.run"] += timed(lambda: session.run(None, payload), per_round)
        for label, pipeline in variants.items():
            samples[label] += await timed_async(lambda p=pipeline: p.predict(payload), per_round)  # type: ignore[misc]
    for pipeline in variants.values():
        await pipeline.close()
    return samples


def report(results: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"onnxruntime {ort.__version__}, Python {platform.python_version()}",
        "",
        "| model | path | p50 µs | p99 µs | added p50 µs |",
        "|---|---|---|---|---|",
    ]
    for model, samples in results.items():
        base = statistics.median(samples["session.run"])
        for label, values in samples.items():
            added = "" if label == "session.run" else f"{(statistics.median(values) - base) * 1e6:.1f}"
            lines.append(
                f"| {model} | {label} | {statistics.median(values) * 1e6:.1f} | "
                f"{percentile(values, 99) * 1e6:.1f} | {added} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a short run that checks the harness works")
    args = parser.parse_args()
    rounds, per_round = (2, 100) if args.smoke else (10, 1000)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, widths in MODELS.items():
            if args.smoke and widths[0] > 64:
                continue
            path = build_mlp(Path(tmp) / f"{widths[0]}.onnx", widths)
            results[name] = asyncio.run(measure(path, rounds, per_round))
    text = report(results)
    print(text)
    for samples in results.values():  # the harness ran every path and got answers
        assert all(len(v) == rounds * per_round for v in samples.values())
    if not args.smoke:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "runtime_overhead.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

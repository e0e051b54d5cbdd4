"""What a shadow costs production: the fraud service at half its capacity, with no rollout and with a
candidate in the shadow phase answering a copy of every request, in interleaved rounds on one server.

    python -m benchmarks.shadow_cost [--rounds 4] [--seconds 15]    (make shadow-cost)

1. A model store of its own (a copy of the store's models) gets a second version of fraud-gbt: the
   same file stored again, so the shadow agrees and its gate never ends the phase; a lifecycle
   database pins production to the first.
2. The server runs pinned to CPU 0 (one worker), the load generators on CPU 1. Capacity: the best
   req/s of a wrk ladder with p95 within the fraud SLO (loadtests/slo.toml) and no errors.
3. Rounds: hey at half the capacity (open loop, rate-limited) for ``--seconds``, alternately with no
   rollout and with a rollout held in the shadow (each variant first in turn); the rollout is
   started before and aborted after its round through the admin API.

Reported: p95 and p50 of the 200s per variant (median over rounds), the ratio of p95s, how many
copies the shadow compared and dropped, and the share of non-200s. Target: production's p95 with
the shadow within 1.2x of without. Result: benchmarks/results/shadow-cost.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from .overload import hey, measure_capacity, start_pinned

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TOKEN = "shadow-cost-operator-0123"
HELD = {"shadow_min_requests": 10**9, "stage_max_s": 10**9}
"""A policy that keeps a rollout in the shadow: the agreement gate never has enough requests to pass."""


def prepare(work: Path) -> tuple[dict[str, str], str, str]:
    """A store with a copy of fraud-gbt as a second version: (its environment, production, candidate)."""
    home = work / "bentoml"
    source = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    if not (source / "models" / "fraud-gbt").is_dir():
        sys.exit(f"no fraud-gbt in {source}: run make models first")
    shutil.copytree(source / "models", home / "models", symlinks=True)
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    script = (
        "import bentoml\n"
        "from models.store import store_onnx\n"
        "primary = [m for m in bentoml.models.list('fraud-gbt') if m.info.metadata.get('role') == 'primary']\n"
        "model = max(primary, key=lambda m: m.info.creation_time)\n"
        "print(model.tag.version)\n"
        "data = open(model.path_of('model.onnx'), 'rb').read()\n"
        "print(store_onnx('fraud-gbt', data, metadata={'copy_of': str(model.tag)}).split(':')[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    production, candidate = out.stdout.strip().splitlines()[-2:]
    from runtime.registry import LifecycleStore

    store = LifecycleStore(work / "lifecycle.sqlite")
    store.move_alias("fraud-gbt", "production", production, "operator:bench", "the version before the benchmark")
    store.close()
    return env, production, candidate


def admin(url: str, path: str, body: object = None) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if body is None:
        answer = httpx.get(f"{url}/admin/{path}", headers=headers, timeout=60)
    else:
        answer = httpx.post(f"{url}/admin/{path}", json=body, headers=headers, timeout=60)
    answer.raise_for_status()
    found: dict[str, object] = answer.json()
    return found


def shadow_counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = {
        f"compared_{result}": float(v)
        for result, v in re.findall(r'^ballast_shadow_comparisons_total\{[^}]*result="(\w+)"[^}]*\} (\S+)$', text, re.M)
    }
    found["dropped"] = sum(float(v) for v in re.findall(r"^ballast_shadow_dropped_total\{[^}]*\} (\S+)$", text, re.M))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="rounds per variant")
    parser.add_argument("--seconds", type=int, default=15, help="of load per round")
    parser.add_argument("--load", type=float, default=0.5, help="share of the measured capacity to send")
    parser.add_argument("--warmup-rounds", type=int, default=2, help="rounds per variant run first, reported apart")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ballast-shadow-"))
    env, _, candidate = prepare(work)
    settings = [
        f"BENTOML_HOME={env['BENTOML_HOME']}",
        f"BALLAST_STATE_PATH={work / 'lifecycle.sqlite'}",
        f"BALLAST_TOKENS={json.dumps({'bench': {'token': TOKEN, 'roles': ['operator']}})}",
    ]
    target = start_pinned("fraud", work, settings, "shadow-cost")
    server = target.server
    results: dict[str, list[dict[str, float]]] = {"no rollout": [], "shadow of every request": []}
    warmup: dict[str, list[dict[str, float]]] = {label: [] for label in results}
    try:
        server.wait(target.path, target.body.read_bytes())
        best, _ = measure_capacity(server, target.path, target.body, target.script, target.slo_ms)
        rate = best.rps * args.load
        print(f"capacity {best.rps:.0f} req/s; rounds at {rate:.0f} req/s", flush=True)
        labels = list(results)
        for round_ in range(-args.warmup_rounds, args.rounds):
            for label in labels[round_ % 2 :] + labels[: round_ % 2]:
                shadow = label != "no rollout"
                if shadow:
                    admin(server.url, "rollouts", {"version": candidate, "policy": HELD})
                before = shadow_counts(server.url)
                run = hey(server.url, target.body, 32, rate, args.seconds, target.path, processes=4)
                after = shadow_counts(server.url)
                if shadow:
                    state = admin(server.url, "models")["rollout"]
                    assert isinstance(state, dict), state
                    assert state["state"] == "shadow", state
                    admin(server.url, "rollouts/abort", {"reason": "the round is over"})
                ok = run.latencies[run.ok()]
                (results if round_ >= 0 else warmup)[label].append(
                    {
                        "p95_ms": run.p95_ok_ms(),
                        "p50_ms": float(np.percentile(ok, 50) * 1000) if len(ok) else float("inf"),
                        "requests": float(len(run.statuses)),
                        "not_200": float((~run.ok()).sum()),
                        "compared": sum(after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("compared")),
                        "dropped": after["dropped"] - before["dropped"],
                    }
                )
                shown = (results if round_ >= 0 else warmup)[label][-1]
                print(f"round {round_ + 1} {label}: {json.dumps(shown)}", flush=True)
                time.sleep(1)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    text = report(results, warmup, best.rps, rate, args)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shadow-cost.md").write_text(text + "\n")


def report(
    results: dict[str, list[dict[str, float]]],
    warmup: dict[str, list[dict[str, float]]],
    capacity: float,
    rate: float,
    args: argparse.Namespace,
) -> str:
    def mid(label: str, key: str) -> float:
        return float(np.median([r[key] for r in results[label]]))

    without, with_ = results
    ratios = [s["p95_ms"] / n["p95_ms"] for n, s in zip(results[without], results[with_], strict=True)]
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"Capacity {capacity:.0f} req/s (p95 within the SLO); load {rate:.0f} req/s ({args.load:.0%}), "
        f"{args.rounds} rounds of {args.seconds} s per variant, interleaved.",
        "",
        "| variant | p50 ms | p95 ms | requests | not 200 | shadow compared | shadow dropped |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in results:
        lines.append(
            f"| {label} | {mid(label, 'p50_ms'):.2f} | {mid(label, 'p95_ms'):.2f} | {mid(label, 'requests'):.0f} | "
            f"{mid(label, 'not_200'):.0f} | {mid(label, 'compared'):.0f} | {mid(label, 'dropped'):.0f} |"
        )
    verdict = "within" if float(np.median(ratios)) <= 1.2 else "NOT within"
    lines += [
        "",
        f"p95 with the shadow / without, per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median {float(np.median(ratios)):.2f} ({verdict} 1.2x).",
    ]
    if args.warmup_rounds:
        early = [s["p95_ms"] / n["p95_ms"] for n, s in zip(*warmup.values(), strict=True)]
        lines.append(
            f"Warm-up rounds first (the server's first shadows), not in the table: p95 ratios "
            f"{', '.join(f'{r:.2f}' for r in early)}."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

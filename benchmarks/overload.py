"""Overload drill: a burst at FACTOR x a service's measured capacity (``make overload``,
``make overload-edge``).

``--model fraud``: the fraud chain (POST /score, SLO from loadtests/slo.toml); ``--model mlp``: the
heavy 512-2048-2048-1000 MLP of benchmarks/compare.py behind the tensor service (POST /predict, one
row per request, SLO p95 <= 50 ms), where the model, not HTTP, is the cost of a request.

1. Capacity: wrk up a ladder of connections; the best req/s with p95 <= the SLO (loadtests/slo.toml)
   and no errors. With ``--proxy nginx``, nginx (deploy/nginx.conf.template) is then started in
   front, limiting prediction requests in flight to ``--max-inflight`` (32), and the ladder is
   measured again through it: that is the capacity the burst is compared with.
2. Burst: ``hey`` for ``--seconds`` (60) at FACTOR (4) x capacity: W workers, each rate-limited to
   capacity x FACTOR / W requests per second, so the offered rate does not fall when the server
   slows down (unless every worker waits on a reply), split over several hey processes started a
   fraction of the period apart so that the arrivals spread over time (:func:`hey`). Meanwhile a
   poller checks ``/livez``, ``/readyz`` and ``/metrics`` every 0.5 s and sends one prediction
   request to read a refusal's headers.
3. Recovery: right after the burst, half of capacity for 20 s; the first second from which every
   one-second window meets the SLO is the recovery time.

The server runs pinned to CPU 0 and the load generators to CPU 1, so that "capacity" is the
server's and the generator does not take its CPU (2-core machine); nginx runs on ``--proxy-cpu``.
Checks (exit 1 on a miss): the server never exits; every non-2xx is 503 or 429 with Retry-After;
goodput (200s per second) >= 0.9 x capacity; p95 of the 200s <= the SLO; recovery within 10 s;
health endpoints answer 200 in under 2 s throughout. Results: benchmarks/results/overload-*.md and
.json, with the server's own count of its answers (/metrics) and its CPU per answer and per refusal.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.settings import ServerSettings

from .compare import WRK_SCRIPT, Rung, drive
from .processes import Server, cpu_and_rss, start_nginx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent


@dataclass
class Requests:
    """Per-request outcomes of one hey run."""

    offsets: np.ndarray
    latencies: np.ndarray
    statuses: np.ndarray
    seconds: float

    @classmethod
    def from_csv(cls, text: str, seconds: float) -> Requests:
        rows = list(csv.DictReader(io.StringIO(text)))
        return cls(
            np.array([float(r["offset"]) for r in rows]),
            np.array([float(r["response-time"]) for r in rows]),
            np.array([int(r["status-code"]) for r in rows]),
            seconds,
        )

    def shifted(self, seconds: float) -> Requests:
        return Requests(self.offsets + seconds, self.latencies, self.statuses, self.seconds)

    def ok(self) -> np.ndarray:
        return np.asarray(self.statuses == 200)

    def p95_ok_ms(self) -> float:
        ok = self.latencies[self.ok()]
        return float(np.percentile(ok, 95) * 1000) if len(ok) else float("inf")


@dataclass
class Poll:
    checks: int = 0
    failures: list[str] = field(default_factory=list)
    slowest_s: float = 0.0
    refusals: dict[str, int] = field(default_factory=dict)
    """Status of the poller's own /score requests during the burst, with Retry-After seen or not."""


def hey(url: str, body: Path, workers: int, rate: float, seconds: int, path: str, processes: int = 1) -> Requests:
    """``workers`` connections posting ``body`` for ``seconds``, each at most ``rate / workers``
    requests per second, split over ``processes`` hey processes started a fraction of a period apart.

    One hey process starts every worker's rate timer at once, so its workers fire together: 400
    workers at 20 requests/s each arrive as 400 requests every 50 ms, not one every 125 us, and a
    server or proxy sees bursts 400 deep with idle gaps between them. Staggering the processes over
    the period spreads the arrivals over it (and fewer goroutines per process keep hey's own
    latency floor down: ~10 ms with 400 in one process on one core, ~1 ms with 50)."""
    processes = max(1, min(processes, workers))
    period = workers / rate
    started, runs = time.monotonic(), []
    for i in range(processes):
        share = workers // processes + (i < workers % processes)
        time.sleep(max(0.0, started + period * i / processes - time.monotonic()))
        out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 -- read and closed below
        runs.append(
            (
                time.monotonic() - started,
                out,
                subprocess.Popen(
                    [
                        *("hey", "-z", f"{seconds}s", "-c", str(share), "-q", f"{rate / workers:.3f}", "-t", "5"),
                        *("-m", "POST", "-T", "application/json", "-D", str(body), "-o", "csv", f"{url}{path}"),
                    ],
                    stdout=out,
                ),
            )
        )
    parts = []
    for shift, out, process in runs:
        with out:
            if process.wait():
                raise subprocess.CalledProcessError(process.returncode, process.args)
            out.seek(0)
            parts.append(Requests.from_csv(out.read(), seconds).shifted(shift))
    return Requests(
        np.concatenate([r.offsets for r in parts]),
        np.concatenate([r.latencies for r in parts]),
        np.concatenate([r.statuses for r in parts]),
        seconds + runs[-1][0],  # from the first process's start to the last one's end
    )


def poll(url: str, path: str, body: bytes, stop: threading.Event, result: Poll) -> None:
    while not stop.is_set():
        for health in ("/livez", "/readyz", "/metrics"):
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{url}{health}", timeout=2) as response:
                    ok = response.status == 200
            except (OSError, urllib.error.HTTPError) as exc:
                ok = False
                result.failures.append(f"{health}: {exc}")
            result.checks += 1
            result.slowest_s = max(result.slowest_s, time.monotonic() - started)
            if not ok and not result.failures:
                result.failures.append(f"{health}: not 200")
        request = urllib.request.Request(f"{url}{path}", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                key = str(response.status)
        except urllib.error.HTTPError as exc:
            key = f"{exc.code} retry-after={exc.headers.get('retry-after')}"
        except OSError as exc:
            key = type(exc).__name__
        result.refusals[key] = result.refusals.get(key, 0) + 1
        stop.wait(0.5)


def scrape(url: str) -> list[Any]:
    """``url``'s ``/metrics``, parsed (read it once for several counts)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return list(text_string_to_metric_families(response.read().decode()))


def server_counts(url: str, families: list[Any] | None = None) -> dict[str, float]:
    """The server's own account of its answers, from ``/metrics`` (or ``families`` already read):
    requests by outcome, and refusals (HTTP layer) and sheds (batch queues) by reason, e.g.
    ``refused server_busy``."""
    wanted = {"ballast_requests": "outcome", "ballast_refused": "reason", "ballast_shed": "reason"}
    counts: dict[str, float] = {}
    for family in families if families is not None else scrape(url):
        label = wanted.get(family.name)
        if label is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = f"{family.name.removeprefix('ballast_')} {sample.labels[label]}"
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def count_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {k: int(v - before.get(k, 0.0)) for k, v in sorted(after.items()) if v - before.get(k, 0.0)}


def measure_capacity(server: Server, path: str, body: Path, script: Path, slo_ms: float) -> tuple[Rung, list[Rung]]:
    """The rung of a wrk ladder with the best req/s, p95 <= ``slo_ms`` and no errors, and all rungs."""
    rungs = []
    for connections in (2, 4, 8, 16, 32, 64):
        rung = drive(server, path, body, script, connections, 8, 1, "application/json")
        rungs.append(rung)
        print(f"capacity c={connections:3d} {rung.rps:7.0f} req/s p95 {rung.p95_ms:6.1f} ms bad {rung.bad}", flush=True)
        if rung.p95_ms > 2 * slo_ms or rung.bad:
            break
    good = [r for r in rungs if r.p95_ms <= slo_ms and r.bad == 0]
    if not good:
        raise RuntimeError(f"no rung met p95 <= {slo_ms} ms without errors: {rungs}")
    return max(good, key=lambda r: r.rps), rungs


def recovery_s(run: Requests, slo_ms: float) -> float | None:
    """Seconds from the start of ``run`` until every later one-second window meets the SLO."""
    windows = int(run.seconds)
    good = []
    for second in range(windows):
        inside = (run.offsets >= second) & (run.offsets < second + 1)
        lat = run.latencies[inside]
        good.append(
            bool(inside.any())
            and bool((run.statuses[inside] == 200).all())
            and float(np.percentile(lat, 95)) * 1000 <= slo_ms
        )
    for second in range(windows):
        if all(good[second:]):
            return float(second)
    return None


@dataclass
class Target:
    """A service under test, pinned to CPU 0, and what its clients send."""

    server: Server
    name: str
    path: str
    body: Path
    script: Path
    """The wrk script that posts ``body``."""
    slo_ms: float


def start_pinned(model: str, work: Path, ballast_env: list[str], make_target: str) -> Target:
    """Start ``model``'s service on CPU 0 and move this process (and the load generators it starts)
    to CPU 1. ``fraud``: the fraud chain, SLO from loadtests/slo.toml; ``mlp`` (``digits``): the heavy
    MLP of benchmarks/compare.py (the digits model) behind the tensor service, SLO 50 ms."""
    for tool in ("wrk", "hey", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (make {make_target} installs wrk and hey)")
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    env = {"BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT)}
    if model == "fraud":
        from models import fraud

        slo_ms = float(tomllib.loads((ROOT / "loadtests" / "slo.toml").read_text())["fraud"]["p95_ms"])
        body, path, name = work / "transaction.json", "/score", "services.fraud:Fraud"
        body.write_text(json.dumps(fraud.generate(1, seed=11)[0][0]))
    else:
        from .compare import setup_digits, setup_mlp

        setup = (setup_digits if model == "digits" else setup_mlp)(argparse.Namespace(smoke=False), work)
        slo_ms, path, name, env = 50.0, setup.path, "services.tensor:Tensor", {**env, **setup.env}
        [body] = [p.body for p in setup.plan if p.name == "ballast" and p.rows == 1]  # its own JSON route
    env.update(dict(kv.split("=", 1) for kv in ballast_env))
    if "BENTOML_HOME" not in env:  # a home of its own: BentoML keeps its metrics files there, and
        # servers started together in one home would each count the others' requests
        source = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
        home = work / "bentoml"
        home.mkdir(exist_ok=True)
        if not (home / "models").exists():
            (home / "models").symlink_to(source / "models")
        env["BENTOML_HOME"] = str(home)
    command = ["taskset", "-c", "0", str(BIN / "bentoml"), "serve", name, "--port", "{port}"]
    server = Server(command, env, ROOT, work / "server.log")
    os.sched_setaffinity(0, {1})
    return Target(server, name, path, body, script, slo_ms)


def proxy_p95_ok_ms(work: Path, path: str, started: float, ended: float) -> float | None:
    """p95 of the 200s to ``path`` that began between the epoch times ``started`` and ``ended``, as
    nginx timed them (first byte read to last byte written): the latency without the load
    generator's own delays."""
    log = work / "nginx" / "access.log"
    if not log.exists():
        return None
    wanted = f'"POST {path} '
    times = []
    with log.open() as lines:
        for line in lines:
            status, took, _, end, request = line.split(" ", 4)
            if status == "200" and request.startswith(wanted) and started <= float(end) - float(took) <= ended:
                times.append(float(took))
    return float(np.percentile(times, 95) * 1000) if times else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["fraud", "mlp"], default="fraud")
    parser.add_argument("--seconds", type=int, default=60, help="burst length")
    parser.add_argument("--factor", type=float, default=4.0, help="burst rate / capacity")
    parser.add_argument("--workers", type=int, default=400, help="hey workers (connections) during the burst")
    parser.add_argument("--hey-processes", type=int, default=8, help="hey processes the burst's workers are split over")
    parser.add_argument(
        "--proxy",
        choices=["none", "nginx"],
        default="none",
        help="nginx (deploy/nginx.conf.template) in front, limiting prediction requests in flight",
    )
    parser.add_argument(
        "--max-inflight",
        type=int,
        default=32,
        help="nginx's limit: where both services reach capacity within the SLO on this VM (16-32 "
        "connections; the best rung alone swings between 8 and 64 with the VM's noise)",
    )
    parser.add_argument("--proxy-cpu", type=int, default=0, help="the CPU nginx runs on (the server's: 0)")
    parser.add_argument(
        "--ballast-env", action="append", default=[], metavar="BALLAST_X=V", help="server settings (repeatable)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ballast-overload-"))
    target = start_pinned(args.model, work, args.ballast_env, "overload")
    server, path, body, script, slo_ms = target.server, target.path, target.body, target.script, target.slo_ms
    report: dict[str, object] = {"slo_ms": slo_ms, "factor": args.factor, "seconds": args.seconds}
    front = server  # what the clients talk to: the server, or the proxy in front of it
    try:
        server.wait(path, body.read_bytes())
        best, rungs = measure_capacity(server, path, body, script, slo_ms)
        served_cpu_s = best.cpu_s_per_s / best.rps  # the server's CPU per answer at capacity
        if args.proxy == "nginx":
            settings = dict(kv.split("=", 1) for kv in args.ballast_env)
            max_body = int(settings.get("BALLAST_MAX_BODY_BYTES", ServerSettings().max_body_bytes))
            if shutil.which("nginx") is None:
                sys.exit("nginx is needed for --proxy nginx (make overload-edge installs it)")
            front = start_nginx(server, work / "nginx", args.max_inflight, args.proxy_cpu, max_body, log=True)
            front.wait(path, body.read_bytes())
            report.update(capacity_direct_rps=best.rps, max_inflight=args.max_inflight, proxy_cpu=args.proxy_cpu)
            print(f"direct {best.rps:.0f} req/s at {best.connections} connections", flush=True)
            best, rungs = measure_capacity(front, path, body, script, slo_ms)
        capacity = best.rps
        report["capacity_rps"] = capacity
        offered = capacity * args.factor
        print(f"capacity {capacity:.0f} req/s; burst {offered:.0f} req/s for {args.seconds} s", flush=True)

        counted = server_counts(server.url)
        stop, polled = threading.Event(), Poll()
        poller = threading.Thread(target=poll, args=(front.url, path, body.read_bytes(), stop, polled))
        cpu0, rss0 = cpu_and_rss(server.process.pid)
        proxy_cpu0 = cpu_and_rss(front.process.pid)[0]
        poller.start()
        burst_started = time.time()
        try:
            burst = hey(front.url, body, args.workers, offered, args.seconds, path, args.hey_processes)
        finally:
            stop.set()
            poller.join()
        burst_ended = time.time()
        cpu1, rss1 = cpu_and_rss(server.process.pid)
        proxy_cpu1 = cpu_and_rss(front.process.pid)[0]
        server_said = count_delta(counted, server_counts(server.url))
        after = hey(front.url, body, 16, capacity / 2, 20, path)
        alive = server.process.poll() is None

        statuses = {str(s): int(n) for s, n in zip(*np.unique(burst.statuses, return_counts=True), strict=True)}
        goodput = float(burst.ok().sum()) / burst.seconds
        recovered = recovery_s(after, slo_ms)
        refusal_headers_ok = all("retry-after=None" not in k for k in polled.refusals if k.startswith(("503", "429")))
        checks = {
            "server alive": alive,
            "only 200, 503, 429": set(statuses) <= {"200", "503", "429"},
            "refusals carry Retry-After": refusal_headers_ok,
            "goodput >= 0.9 x capacity": goodput >= 0.9 * capacity,
            "p95 of 200s <= SLO": burst.p95_ok_ms() <= slo_ms,
            "recovered within 10 s": recovered is not None and recovered <= 10,
            "health answered throughout": not polled.failures and polled.slowest_s < 2,
        }
        server_cpu_s = cpu1 - cpu0
        refused = sum(n for k, n in server_said.items() if k.startswith(("refused", "shed")))
        served = server_said.get("requests success", 0)
        report.update(
            # what the server's core spent per refusal, once its answers are paid at their cost at capacity
            refusal_cpu_us=(server_cpu_s - served * served_cpu_s) / refused * 1e6
            if refused and args.proxy == "none"
            else None,
            served_cpu_us=served_cpu_s * 1e6,
            offered_rps=len(burst.statuses) / burst.seconds,
            goodput_rps=goodput,
            goodput_ratio=goodput / capacity,
            statuses=statuses,
            p95_ok_ms=burst.p95_ok_ms(),
            p95_ok_at_proxy_ms=proxy_p95_ok_ms(work, path, burst_started, burst_ended),
            recovery_s=recovered,
            health_checks=polled.checks,
            health_failures=polled.failures[:5],
            health_slowest_s=polled.slowest_s,
            poller_scores=polled.refusals,
            server_cpu_cores=server_cpu_s / burst.seconds,
            proxy_cpu_cores=(proxy_cpu1 - proxy_cpu0) / burst.seconds if front is not server else 0.0,
            hey_processes=args.hey_processes,
            workers=args.workers,
            server_counts=server_said,
            rss_mb=[rss0, rss1],
            checks=checks,
            capacity_ladder=[asdict(r) for r in rungs],
        )
    finally:
        if front is not server:
            front.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    placement = "server on CPU 0, load on CPU 1"
    if args.proxy == "nginx":
        placement += f", nginx on CPU {args.proxy_cpu} passing {report['max_inflight']} requests at a time"
    refusal_cpu = report.get("refusal_cpu_us")
    lines = [
        f"Overload drill, {target.name} ({placement}), SLO p95 <= {slo_ms:.0f} ms.",
        "",
        f"- capacity: {capacity:,.0f} req/s; burst offered {report['offered_rps']:,.0f} req/s "
        f"({args.factor:g}x target) for {args.seconds} s",
        f"- server settings: {args.ballast_env or 'defaults'}",
        f"- the server's count of the burst (/metrics): {server_said}",
        f"- answers: {statuses}; goodput {goodput:,.0f} req/s = {goodput / capacity:.2f} x capacity; "
        f"p95 of 200s {burst.p95_ok_ms():.1f} ms",
        f"- recovery after the burst: {recovered} s; health checks {polled.checks}, failures "
        f"{len(polled.failures)}, slowest {polled.slowest_s * 1000:.0f} ms; poller's /score: {polled.refusals}",
        f"- server CPU {report['server_cpu_cores']:.2f} cores, RSS {rss0:.0f} -> {rss1:.0f} MB; "
        f"hey workers {args.workers} in {args.hey_processes} processes",
        f"- server CPU per answer at capacity {served_cpu_s * 1e6:.0f} us; per refusal in the burst "
        + (f"{refusal_cpu:.0f} us (what is left once the answers are paid at that cost)" if refusal_cpu else "-"),
        *(
            [
                f"- nginx CPU {report['proxy_cpu_cores']:.2f} cores; p95 of 200s as nginx timed them "
                f"(first byte in to last byte out) {report['p95_ok_at_proxy_ms'] or float('nan'):.1f} ms"
            ]
            if args.proxy == "nginx"
            else []
        ),
        "",
        *(f"- [{'x' if ok else ' '}] {name}" for name, ok in checks.items()),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"overload-{args.model}" + ("-nginx" if args.proxy == "nginx" else "")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1, default=str))
    print("\n".join(lines))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()

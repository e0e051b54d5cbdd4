"""What the audit trail costs the fraud chain's throughput: fraud servers with the audit trail off
and on (``BALLAST_AUDIT_KEY``), at saturation, in interleaved rounds.

    python -m benchmarks.audit_cost [--rounds 6] [--seconds 10]    (make audit-cost)
    python -m benchmarks.audit_cost --smoke                         one short round: checks it works
    python -m benchmarks.audit_cost --only 'audit off' --only 'writer process, spare core'
                                                                    some variants, no result file

Variants (``--smoke``: the first and the third only):

- ``audit off``;
- ``writer thread``: the trail written by a thread of the worker (``BALLAST_AUDIT_WRITER=thread``);
- ``writer process, same core``: the default, a writer process per worker, left on the server's
  core (what the trail costs a server held to one core, everything counted);
- ``writer process, spare core``: the same, the writer process moved to CPU 1 (the load
  generator's core, which wrk leaves mostly idle): what the trail costs the request path when the
  machine has room beside the workers.

1. The servers are started at once (drift watching off in all: the trail's cost alone), each
   pinned to CPU 0 (one worker, a lifecycle database and, for
   those with the trail, an audit database of their own); the load generator runs on CPU 1. Only
   one server is loaded at a time; the others idle.
2. Rounds: wrk, closed loop with ``--connections`` (16: past the fraud chain's saturation on one
   core), posts one transaction to ``/score`` for ``--seconds``, to each server in turn (each first
   in turn). After a round on a server with the trail, the harness waits until its writer has
   written (or dropped) every row queued, so that the writer's tail runs inside that round's CPU
   account and not during another server's round.

Reported per variant (median over rounds): req/s, p50 and p95 (wrk's), the server's CPU per answer
(its process tree's utime + stime, the writer process included, from the start of the round to the
writer's catch-up, over the answers it counted on ``/metrics``), its process tree's memory; the
ratio of req/s with the trail to without, per round and its median (target: >= 0.95); the writer's
time per row (``ballast_audit_write_seconds_total`` over ``ballast_audit_written_total``: wall time
of the batch appends, through the pipe for a writer process); rows written against the answers the
server counted, rows dropped, and whether each chain verifies once the servers have stopped.
Result: benchmarks/results/audit-cost.md (not with ``--smoke``, which exits 1 when the harness
measured nothing or a row went missing).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .compare import drive
from .overload import RESULTS, Target, count_delta, scrape, server_counts, start_pinned
from .processes import cpu_and_rss, tree

AUDIT_KEY = "audit-cost-key-0123456789"
OFF, THREAD, SAME, SPARE = "audit off", "writer thread", "writer process, same core", "writer process, spare core"
VARIANTS: dict[str, tuple[list[str], set[int] | None]] = {
    OFF: ([], None),
    THREAD: (["BALLAST_AUDIT_WRITER=thread"], None),
    SAME: (["BALLAST_AUDIT_WRITER=process"], None),
    SPARE: (["BALLAST_AUDIT_WRITER=process"], {1}),
}
"""Each variant's settings beyond the trail's key and path (none for ``audit off``), and the CPUs its
writer process is moved to (``None``: left where the server is)."""
SMOKE = (OFF, SAME)
COUNTERS = {
    "ballast_audit_queued": "queued",
    "ballast_audit_written": "written",
    "ballast_audit_write_seconds": "write_s",
    "ballast_audit_dropped": "dropped",
}
"""The audit writer's counters on /metrics (family names, without ``_total``), by short name."""


def audit_counts(url: str, families: list[Any] | None = None) -> dict[str, float]:
    """The audit writer's counters on ``url``'s ``/metrics`` (or ``families`` already read): rows
    queued, written and dropped (all reasons, and ``dropped REASON`` each), seconds writing; 0 for a
    counter with no sample yet."""
    counts = dict.fromkeys(COUNTERS.values(), 0.0)
    for family in families if families is not None else scrape(url):
        key = COUNTERS.get(family.name)
        if key is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                counts[key] += sample.value
                if key == "dropped":
                    reason = f"dropped {sample.labels['reason']}"
                    counts[reason] = counts.get(reason, 0.0) + sample.value
    return counts


def settle(url: str, timeout_s: float = 30.0) -> dict[str, float]:
    """The audit counters once every row queued is written or dropped (or ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = audit_counts(url)
        if counts["written"] + counts["dropped"] >= counts["queued"] or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def answered(counts: dict[str, int]) -> int:
    """Requests the pipeline answered (a model or the rule stage), from a delta of ``server_counts``."""
    return counts.get("requests success", 0) + counts.get("requests fallback", 0)


@dataclass
class Round:
    rps: float
    p50_ms: float
    p95_ms: float
    not_2xx: int
    """wrk's non-2xx answers and socket errors."""
    refused: int
    """Requests the server refused or shed and counted (503 with Retry-After: overload, not a fault)."""
    answers: int
    """Answers the server counted (/metrics)."""
    cpu_us: float
    """The server's CPU per answer, the writer's catch-up included."""
    writer_us: float
    """The writer process's CPU per row written (0 without one)."""
    rss_mb: float
    """The server's process tree's resident memory after the round."""
    queued: int
    written: int
    dropped: int
    write_s: float


def measure(target: Target, connections: int, seconds: int) -> Round:
    """One round of wrk on ``target``; the server's counters and CPU from before it to the writer's catch-up."""
    server = target.server
    families = scrape(server.url)
    counted, audit = server_counts(server.url, families), audit_counts(server.url, families)
    writer = find_writer(server.process.pid)
    cpu0, _ = cpu_and_rss(server.process.pid)
    writer0 = cpu_and_rss(writer)[0] if writer is not None else 0.0
    rung = drive(server, target.path, target.body, target.script, connections, seconds, 1, "application/json")
    after = settle(server.url)
    cpu1, rss = cpu_and_rss(server.process.pid)
    writer1 = cpu_and_rss(writer)[0] if writer is not None and writer == find_writer(server.process.pid) else writer0
    delta = count_delta(counted, server_counts(server.url))
    answers = answered(delta)
    return Round(
        rps=rung.rps,
        p50_ms=rung.p50_ms,
        p95_ms=rung.p95_ms,
        not_2xx=rung.bad,
        refused=sum(n for key, n in delta.items() if key.startswith(("refused ", "shed "))),
        answers=answers,
        cpu_us=(cpu1 - cpu0) / max(answers, 1) * 1e6,
        writer_us=(writer1 - writer0) / max(after["written"] - audit["written"], 1) * 1e6,
        rss_mb=rss,
        queued=int(after["queued"] - audit["queued"]),
        written=int(after["written"] - audit["written"]),
        dropped=int(after["dropped"] - audit["dropped"]),
        write_s=after["write_s"] - audit["write_s"],
    )


def verify(path: Path) -> tuple[int, list[str]]:
    """Rows in the audit database at ``path`` and the chain's problems (empty: it verifies)."""
    from runtime.audit import AuditStore

    store = AuditStore(path)
    try:
        return store.count(), store.verify()
    finally:
        store.close()


def find_writer(server_pid: int) -> int | None:
    """The audit writer process under ``server_pid``, if one runs."""
    for pid in tree(server_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"runtime.audit.sink" in command:
            return pid
    return None


def move_writer(server_pid: int, cpus: set[int]) -> int:
    """Move the audit writer process under ``server_pid`` to ``cpus``; its process id."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid = find_writer(server_pid)
        if pid is not None:
            os.sched_setaffinity(pid, cpus)
            return pid
        time.sleep(0.2)
    raise RuntimeError("no audit writer process found under the server")


def round_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a benchmark of interleaved saturation rounds (this one's and drift_cost's)."""
    parser.add_argument("--rounds", type=int, default=6, help="rounds per variant")
    parser.add_argument("--seconds", type=int, default=10, help="of load per round and variant")
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections (closed loop)")
    parser.add_argument("--warmup-rounds", type=int, default=1, help="rounds per variant run first, not reported")
    parser.add_argument("--smoke", action="store_true", help="one round of 2 s, no warm-up, no result file")


def smoke_sized(args: argparse.Namespace) -> None:
    """``--smoke``: one short round, no warm-up."""
    if args.smoke:
        args.rounds, args.seconds, args.warmup_rounds, args.connections = 1, 2, 0, 8


def interleave(
    targets: dict[str, Target], args: argparse.Namespace, before: Callable[[str], object] | None = None
) -> dict[str, list[Round]]:
    """Rounds of wrk on each target in turn, each first in turn (``before``: called with a
    target's label before each of its rounds); the measured rounds per label, warm-up left out."""
    results: dict[str, list[Round]] = {label: [] for label in targets}
    labels = list(targets)
    for round_ in range(-args.warmup_rounds, args.rounds):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            if before is not None:
                before(label)
            measured = measure(targets[label], args.connections, args.seconds)
            if round_ >= 0:
                results[label].append(measured)
            shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(measured).items()}
            print(f"round {round_ + 1} {label}: {shown}", flush=True)
            time.sleep(1)
    return results


def run(args: argparse.Namespace, work: Path) -> tuple[dict[str, list[Round]], dict[str, tuple[int, list[str]]]]:
    """The measured rounds per variant, and per variant with the trail the rows in its database once
    the servers stopped and what is wrong with its chain (or with its count against the rows written)."""
    variants = SMOKE if args.smoke else tuple(args.only or VARIANTS)
    targets: dict[str, Target] = {}
    written: dict[str, float] = {}

    def placed(label: str) -> None:
        cpus = VARIANTS[label][1]
        if cpus is not None:  # again each round: a writer process that died comes back on CPU 0
            move_writer(targets[label].server.process.pid, cpus)

    try:
        for index, label in enumerate(variants):
            variant = work / f"v{index}"
            variant.mkdir()
            settings = [f"BALLAST_STATE_PATH={variant / 'lifecycle.sqlite'}", "BALLAST_DRIFT_ENABLED=false"]
            if label != OFF:  # drift off in every variant: the trail's cost alone
                settings += [f"BALLAST_AUDIT_KEY={AUDIT_KEY}", f"BALLAST_AUDIT_PATH={variant / 'audit.sqlite'}"]
            targets[label] = start_pinned("fraud", variant, settings + VARIANTS[label][0], "audit-cost")
        for target in targets.values():  # all up before any is measured
            target.server.wait(target.path, target.body.read_bytes())
        results = interleave(targets, args, placed)
        for label in variants[1:]:  # warm-up rounds and readiness probe included
            written[label] = settle(targets[label].server.url)["written"]
    finally:
        for target in targets.values():
            target.server.stop()
    chains: dict[str, tuple[int, list[str]]] = {}
    for index, label in enumerate(variants):
        if label == OFF:
            continue
        rows, problems = verify(work / f"v{index}" / "audit.sqlite")
        if rows != written[label]:
            problems.append(f"{rows} rows in the database, {written[label]:.0f} written before the stop")
        chains[label] = (rows, problems)
    return results, chains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    round_arguments(parser)
    parser.add_argument(
        "--only",
        action="append",
        choices=list(VARIANTS),
        help=f"a variant to run (repeat for several; {OFF!r} first): a quick comparison, no result file",
    )
    args = parser.parse_args()
    if args.only and args.only[0] != OFF:
        parser.error(f"--only: {OFF!r} comes first (the others are measured against it)")
    smoke_sized(args)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="ballast-audit-cost-"))
    try:
        results, chains = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(results, chains, args, started)
    print(text)
    if args.smoke or args.only:
        if args.only:
            return
        rounds = [r for label in results for r in results[label]]
        broken = [
            *(
                ["a variant answered badly (beyond the refusals it counted) or not at all"]
                if any(r.not_2xx > r.refused or not r.answers for r in rounds)
                else []
            ),
            *(["the server without the trail queued rows"] if any(r.queued for r in results[OFF]) else []),
            *[
                f"{label}: rows written differ from answers"
                for label in chains
                if sum(r.written for r in results[label]) != sum(r.answers for r in results[label])
            ],
            *[f"{label}: {problem}" for label, (_, problems) in chains.items() for problem in problems[:5]],
        ]
        if broken:
            sys.exit(f"smoke: {'; '.join(broken)}")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "audit-cost.md").write_text(text + "\n")


def report(
    results: dict[str, list[Round]], chains: dict[str, tuple[int, list[str]]], args: argparse.Namespace, started: str
) -> str:
    def mid(label: str, key: str) -> float:
        return float(np.median([getattr(r, key) for r in results[label]]))

    command = " ".join(["python -m benchmarks.audit_cost", *sys.argv[1:]])
    lines = [
        f"# The audit trail's cost{' (smoke: not a measurement)' if args.smoke else ''}",
        "",
        f"`{command}`, {started}; {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}.",
        "",
        f"Fraud servers (services.fraud:Fraud, one worker each) with the audit trail off and on, each on CPU 0, "
        f"loaded one at a time; wrk on CPU 1, closed loop, {args.connections} connections, POST /score with one "
        f"transaction. {args.rounds} rounds of {args.seconds} s per variant, interleaved (each first in turn), "
        f"after {args.warmup_rounds} warm-up round(s); medians over rounds. The writer process of "
        f"'{SPARE}' is moved to CPU 1.",
        "",
        "| variant | req/s | ratio to off | p50 ms | p95 ms | CPU per answer | memory MB | answers | rows written "
        "| dropped | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = {
        label: [on.rps / off.rps for off, on in zip(results[OFF], results[label], strict=True)] for label in results
    }
    for label in results:
        lines.append(
            f"| {label} | {mid(label, 'rps'):,.0f} | {float(np.median(ratios[label])):.3f} | "
            f"{mid(label, 'p50_ms'):.2f} | {mid(label, 'p95_ms'):.2f} | {mid(label, 'cpu_us'):.0f} us | "
            f"{mid(label, 'rss_mb'):.0f} | {mid(label, 'answers'):,.0f} | {mid(label, 'written'):,.0f} | "
            f"{mid(label, 'dropped'):,.0f} | {mid(label, 'not_2xx'):.0f} |"
        )
    lines.append("")

    def writer_cpu(label: str) -> str:
        if not any(r.writer_us for r in results[label]):
            return ""
        return f" (wall, through the pipe), the writer process's CPU per row {mid(label, 'writer_us'):.1f} us"

    for label in chains:
        ratio = float(np.median(ratios[label]))
        cpu = [on.cpu_us - off.cpu_us for off, on in zip(results[OFF], results[label], strict=True)]
        written = sum(r.written for r in results[label])
        answers = sum(r.answers for r in results[label])
        write_s = sum(r.write_s for r in results[label])
        rows, problems = chains[label]
        chain = "verifies" if not problems else f"{len(problems)} problem(s): {'; '.join(problems[:3])}"
        lines += [
            f"- **{label}**: req/s with the trail / without, per round: "
            f"{', '.join(f'{r:.3f}' for r in ratios[label])}; median **{ratio:.3f}** "
            f"({'meets' if ratio >= 0.95 else 'MISSES'} the target >= 0.95). CPU per answer more than without, "
            f"per round: {', '.join(f'{d:+.0f}' for d in cpu)} us, median {float(np.median(cpu)):+.0f} us. "
            f"Writer's time per row {write_s / max(written, 1) * 1e6:.1f} us{writer_cpu(label)}. "
            f"Rows written {written:,} for "
            f"{answers:,} answers ({'equal' if written == answers else 'NOT equal'}), dropped "
            f"{sum(r.dropped for r in results[label]):,}; the database after the stop: {rows:,} rows, the chain "
            f"{chain}.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

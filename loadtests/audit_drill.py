"""The audit drill: a real fraud server with the audit trail on, under locust load; afterwards every
200 must have its row, on its route, and the chain must verify (``make audit-drill``). Loopback
only, bounded in time, stops by itself.

    python -m loadtests.audit_drill [--seconds 60] [--users 20] [--no-canary] [--keep]

1. A model store of the drill's own (a copy of the store's models with a second version of
   fraud-gbt: the same file stored again, as benchmarks/shadow_cost.py makes it), a lifecycle
   database that pins production to the first, an audit database and a key of its own.
2. ``bentoml serve services.fraud:Fraud``; unless ``--no-canary``, a rollout of the copy that passes
   its shadow within a second or two of load and then holds at a canary stage of 50 %, so that both
   routes answer.
3. Locust (AuditDrillClient in loadtests/fraud_locust.py, 10 requests a second per user) for
   ``--seconds``: /score, /score_batch with 16 transactions, and one request in 23 invalid (422,
   no row). Every answer is written down with its route and request id; at the end each user
   finishes the request it is making.
4. ``/metrics`` is read, then the server is stopped (SIGTERM: the shutdown flushes the queue) and
   the audit database is read.

Checks (exit 1 on a miss): every valid request answered 200 and every invalid one 422; with the
canary, the rollout still at its canary stage and both routes answered; per route, the prediction
rows equal the 200s; every 200's request id has exactly one prediction row, on the route its answer
named; any shadow row (a candidate's run on a copy) is for a request production answered, one at
most; ``ballast_audit_dropped_total`` is 0 before the stop; the chain verifies. The result is
printed and written to docs/operations/results/audit-drill.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.audit_cost import audit_counts
from benchmarks.overload import scrape, server_counts
from benchmarks.shadow_cost import prepare

from .rollout_drill import Drill

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "docs" / "operations" / "results" / "audit-drill.md"
AUDIT_KEY = "audit-drill-key-0123456789"
HELD_IN_CANARY: dict[str, Any] = {
    "stages": [0.5, 1.0],
    "shadow_min_requests": 100,
    "stage_min_s": 10**9,
    "stage_max_s": 10**9,
    "latency_max_ratio": 100.0,
    "cooldown_s": 0.0,
}
"""A policy that passes the shadow quickly (the candidate is production's own file) and then keeps
the rollout at its first canary stage: half the requests answered by the candidate."""


def read_answers(path: Path) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """From AuditDrillClient's file: the 200s as (route, request id), and every answer by (request
    kind, status)."""
    ids: Counter[tuple[str, str]] = Counter()
    statuses: Counter[tuple[str, str]] = Counter()
    for line in path.read_text().splitlines():
        status, kind, route, request_id = line.split("\t")
        statuses[kind, status] += 1
        if status == "200":
            ids[route, request_id] += 1
    return ids, statuses


def read_rows(path: Path) -> tuple[Counter[tuple[str, str, str]], list[str]]:
    """The audit database's rows: (kind, route, request id) of each, and what is wrong with its chain."""
    from runtime.audit import AuditStore

    store = AuditStore(path)
    try:
        rows: Counter[tuple[str, str, str]] = Counter()
        after = 0
        while page := store.query(after_seq=after, limit=1000):
            rows.update((str(row["kind"]), str(row["route"]), str(row["request_id"])) for row in page)
            after = int(page[-1]["seq"])
        return rows, store.verify()
    finally:
        store.close()


@dataclass
class Result:
    """What the drill saw: the answers locust got, the server's counters and the audit database."""

    answers: Counter[tuple[str, str]]
    """The 200s, as (route, request id)."""
    statuses: Counter[tuple[str, str]]
    """Every answer, by (request kind, status)."""
    metrics: dict[str, float]
    """The audit counters on /metrics after the load, before the stop."""
    counted: dict[str, float]
    """The server's count of its answers (/metrics), by outcome."""
    rows: Counter[tuple[str, str, str]]
    """The audit rows after the stop, as (kind, route, request id)."""
    problems: list[str]
    """What is wrong with the chain."""
    rollout: dict[str, Any] | None
    """The rollout's state after the load (``None``: none)."""

    @property
    def predictions(self) -> Counter[tuple[str, str]]:
        """The prediction rows, as (route, request id)."""
        return Counter({(route, rid): n for (kind, route, rid), n in self.rows.items() if kind == "prediction"})

    @property
    def shadows(self) -> Counter[tuple[str, str]]:
        """Rows of a candidate's run on a copy of a request production answered, as (production, request id)."""
        return Counter({("production", rid): n for (kind, _, rid), n in self.rows.items() if kind == "shadow"})

    def unexpected(self) -> dict[str, int]:
        wanted = {"/score": "200", "/score_batch": "200", "/score [invalid]": "422"}
        return {f"{kind} {status}": n for (kind, status), n in self.statuses.items() if wanted.get(kind) != status}

    def checks(self, canary: bool) -> dict[str, bool]:
        answered, written = by_route(self.answers), by_route(self.predictions)
        found = {"every valid request answered 200, every invalid one 422": not self.unexpected()}
        if canary:
            found["the rollout held at its canary stage"] = bool(self.rollout and self.rollout["state"] == "canary")
            found["both routes answered"] = set(answered) == {"production", "canary"}
        for route in sorted(answered | written):
            found[f"prediction rows == 200 answers, {route}"] = written[route] == answered[route]
        found["every 200's request id has exactly one prediction row, on its route"] = self.predictions == self.answers
        found["every shadow row is for a request production answered, one at most"] = not (self.shadows - self.answers)
        found["ballast_audit_dropped_total == 0 (before the stop)"] = self.metrics["dropped"] == 0
        found["the chain verifies"] = not self.problems
        return found

    def report(self, args: argparse.Namespace, started: str) -> str:
        answered, written = by_route(self.answers), by_route(self.predictions)
        kinds = Counter(kind for kind, _, _ in self.rows.elements())
        command = " ".join(["python -m loadtests.audit_drill", *sys.argv[1:]])
        rollout = self.rollout
        held = (
            f"a rollout of a copy of fraud-gbt, {rollout['state']} stage {rollout['stage']} at the end"
            if rollout
            else "no rollout"
        )
        statuses = ", ".join(f"{kind} {status}: {n:,}" for (kind, status), n in sorted(self.statuses.items()))
        counted = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(self.counted.items()))
        queued, written_before, dropped = (self.metrics[k] for k in ("queued", "written", "dropped"))
        chain = (
            "verifies" if not self.problems else f"has {len(self.problems)} problem(s): {'; '.join(self.problems[:3])}"
        )
        lines = [
            "# Audit drill",
            "",
            f"`{command}`, {started}, {platform.machine()}, {os.cpu_count()} cores; locust {args.users} users at "
            f"10 req/s each for {args.seconds} s (/score, /score_batch of 16, 1 request in 23 invalid); {held}.",
            "",
            "| route | 200 answers | prediction rows |",
            "|---|---|---|",
            *(f"| {route} | {answered[route]:,} | {written[route]:,} |" for route in sorted(answered | written)),
            "",
            f"- answers by request: {statuses}" + (f"; unexpected: {self.unexpected()}" if self.unexpected() else ""),
            f"- 200s without a prediction row: {(self.answers - self.predictions).total()}; prediction rows "
            f"without a 200: {(self.predictions - self.answers).total()}",
            f"- rows by kind: {', '.join(f'{k} {n:,}' for k, n in sorted(kinds.items()))}; shadow rows for no "
            f"production 200: {(self.shadows - self.answers).total()}",
            f"- /metrics after the load, before the stop: queued {queued:,.0f}, written {written_before:,.0f}, "
            f"dropped {dropped:,.0f}, so {max(0.0, queued - written_before - dropped):,.0f} left for the shutdown's "
            f"flush; the server's count of its answers: {counted}",
            f"- the audit database after the stop: {self.rows.total():,} rows; the chain {chain}",
            "",
            *(f"- [{'x' if ok else ' '}] {name}" for name, ok in self.checks(not args.no_canary).items()),
        ]
        return "\n".join(lines)


def by_route(found: Counter[tuple[str, str]]) -> Counter[str]:
    return Counter(route for route, _ in found.elements())


def run_drill(args: argparse.Namespace, workdir: Path) -> Result:
    """Start the server (and the rollout), run the load, stop the server, read what happened."""
    database, answers = workdir / "audit.sqlite", workdir / "answers.tsv"
    _, _, candidate = prepare(workdir)
    drill = Drill(workdir / "bentoml", workdir, HELD_IN_CANARY, args.users)
    drill.server_env.update(BALLAST_AUDIT_KEY=AUDIT_KEY, BALLAST_AUDIT_PATH=str(database))
    drill.env["BALLAST_AUDIT_DRILL_ANSWERS"] = str(answers)
    rollout = None
    try:
        drill.start_server()
        if not args.no_canary:
            drill.start_rollout(candidate)
        drill.start_load(args.seconds, "AuditDrillClient", stop_timeout_s=30)
        assert drill.load is not None
        drill.load.wait(timeout=args.seconds + 90)
        drill.stop_load()
        families = scrape(drill.url)
        metrics, counted = audit_counts(drill.url, families), server_counts(drill.url, families)
        if not args.no_canary:
            rollout = drill.admin("models")["rollout"]
    finally:
        drill.stop_load()
        drill.stop_server()
    got, statuses = read_answers(answers)
    rows, problems = read_rows(database)
    return Result(got, statuses, metrics, counted, rows, problems, rollout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="of locust load")
    parser.add_argument("--users", type=int, default=20, help="locust users, 10 requests a second each")
    parser.add_argument("--no-canary", action="store_true", help="production only: no rollout")
    parser.add_argument("--keep", action="store_true", help="keep the drill's directory (store, logs, database)")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    workdir = Path(tempfile.mkdtemp(prefix="ballast-audit-drill-"))
    try:
        result = run_drill(args, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    text = result.report(args, started)
    print(text)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(text + "\n")
    sys.exit(0 if all(result.checks(not args.no_canary).values()) else 1)


if __name__ == "__main__":
    main()

"""The drift drill: a real fraud server under locust load whose traffic moves from the usual
context to another season and back, then to another country mix (``make drift-drill``). Loopback
only, bounded in time, stops by itself.

    python -m loadtests.drift_drill [--window 500] [--users 20] [--quiet-windows 20] [--keep]

1. ``bentoml serve services.fraud:Fraud`` on the store's models (a BentoML home of the drill's own
   that links the store: nothing in it changes), drift windows of ``--window`` rows.
2. Locust (DriftDrillClient in loadtests/fraud_locust.py, 10 requests a second per user) in four
   phases, each ended by the windows it has seen close (``ballast_drift_windows_total``):
   ``usual`` for ``--quiet-windows`` windows, where nothing may be confirmed; ``holidays`` until a
   drift is confirmed (at most 6 windows); ``usual`` again until nothing is confirmed (at most 4);
   ``abroad`` until a drift is confirmed (at most 6).
3. After each shifted phase, the alarm as an operator sees it: the confirmed features in
   ``/metrics`` and in ``GET /v1/drift`` (through ``ballast drift``).

Checks (exit 1 on a miss): no confirmed drift in the first usual phase; each shifted phase
confirmed within four windows of its start, on features the context moved; the alarm cleared in the
usual phase between; no failed request. The result is printed and written to
docs/operations/results/drift-drill.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .rollout_drill import Drill

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "docs" / "operations" / "results" / "drift-drill.md"
MOVED = {
    "holidays": {"amount", "merchant_category", "hour"},
    "abroad": {"currency", "country_mismatch", "distance_km"},
}
"""The input features each context moves (models/fraud.py, CONTEXTS)."""


@dataclass
class Phase:
    context: str
    expected: str
    """``quiet`` (nothing confirmed), ``confirmed`` or ``cleared``."""
    windows: int = 0
    """Input windows closed during the phase."""
    confirmed: list[tuple[int, list[str]]] = field(default_factory=list)
    """Per window of the phase (1-based) with confirmed input features: which."""
    outcome: str = ""
    seconds: float = 0.0
    alarm: str = ""
    """What /metrics and ballast drift showed at the phase's end."""

    @property
    def first_confirmed(self) -> int | None:
        return self.confirmed[0][0] if self.confirmed else None


def input_windows(text: str) -> int:
    return int(
        sum(
            float(v) for v in re.findall(r'^ballast_drift_windows_total\{[^}]*source="input"[^}]*\} (\S+)$', text, re.M)
        )
    )


def confirmed_features(text: str) -> list[str]:
    return sorted(
        set(re.findall(r'^ballast_drift_confirmed\{feature="([^"]+)"[^}]*source="input"[^}]*\} 1\.0$', text, re.M))
    )


def run_phase(drill: Drill, phase: Phase, max_windows: int, stop: str) -> Phase:
    """Load in ``phase.context`` until ``stop`` holds (``confirmed``: a drift is confirmed;
    ``cleared``: none is; ``windows``: ``max_windows`` windows closed) or ``max_windows`` windows."""
    drill.env["BALLAST_DRIFT_DRILL_CONTEXT"] = phase.context
    start = input_windows(httpx.get(f"{drill.url}/metrics", timeout=10).text)
    started = time.monotonic()
    drill.start_load(3600, user_class="DriftDrillClient")
    seen = start
    try:
        while phase.windows < max_windows:
            time.sleep(0.25)
            text = httpx.get(f"{drill.url}/metrics", timeout=10).text
            now = input_windows(text)
            if now == seen:
                continue
            seen, phase.windows = now, now - start
            confirmed = confirmed_features(text)
            if confirmed:
                phase.confirmed.append((phase.windows, confirmed))
            if (stop == "confirmed" and confirmed) or (stop == "cleared" and not confirmed):
                break
            if time.monotonic() - started > 600:
                break
    finally:
        drill.stop_load()
    phase.seconds = time.monotonic() - started
    return phase


def alarm(drill: Drill) -> str:
    """The confirmed features' lines of /metrics and of ``ballast drift``, as an operator reads them."""
    from services.cli import main as cli

    metrics = [
        line
        for line in httpx.get(f"{drill.url}/metrics", timeout=10).text.splitlines()
        if line.startswith("ballast_drift_confirmed{") and line.endswith(" 1.0")
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli(["--url", drill.url, "drift"])
    shown = ("CONFIRMED", ": window of", "score (ADWIN)", "calibrated scores promise")
    flagged = [line for line in printed.getvalue().splitlines() if any(s in line for s in shown)]
    return "\n".join(["/metrics:", *metrics, "", "ballast drift:", *flagged])


def judge(phases: list[Phase], failed: int) -> list[str]:
    """What the drill missed (nothing: it passed)."""
    misses = []
    for p in phases:
        if p.expected == "quiet" and p.confirmed:
            misses.append(f"{p.context}: drift confirmed with the usual traffic: {p.confirmed}")
        if p.expected == "confirmed":
            first = p.first_confirmed
            if first is None or first > 4:
                misses.append(f"{p.context}: no drift confirmed within four windows ({p.windows} seen)")
            elif not set(p.confirmed[0][1]) & MOVED[p.context]:
                misses.append(f"{p.context}: confirmed {p.confirmed[0][1]}, none of {sorted(MOVED[p.context])}")
        if p.expected == "cleared" and p.confirmed and p.confirmed[-1][0] == p.windows:
            misses.append(f"{p.context}: the alarm did not clear within {p.windows} windows")
    if failed:
        misses.append(f"{failed} requests failed")
    return misses


def report(phases: list[Phase], drill: Drill, args: argparse.Namespace, started: str, misses: list[str]) -> str:
    requests = sum(s.requests for s in drill.segments)
    failed = sum(s.failures for s in drill.segments)
    lines = [
        "# Drift drill",
        "",
        f"`python -m loadtests.drift_drill --window {args.window} --users {args.users}`, {started}, "
        f"{platform.machine()}, {os.cpu_count()} cores; a fraud server with drift windows of {args.window} rows "
        f"(decided from {args.window // 2}), locust {args.users} users at 10 req/s each.",
        "",
        "| phase | expected | windows | confirmed (window: input features) | seconds |",
        "|---|---|---|---|---|",
    ]
    for p in phases:
        shown = "; ".join(f"{w}: {', '.join(f)}" for w, f in p.confirmed[:3]) or "none"
        if len(p.confirmed) > 3:
            shown += "; ..."
        lines.append(f"| {p.context} | {p.expected} | {p.windows} | {shown} | {p.seconds:.0f} |")
    lines += ["", f"Load: {requests:,} requests, {failed} failed.", ""]
    lines += ["Result: " + ("PASSED" if not misses else "MISSED: " + "; ".join(misses)), ""]
    for p in phases:
        if p.alarm:
            lines += [f"What an operator saw at the end of {p.context}:", "", "```", p.alarm, "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=500, help="rows per drift window")
    parser.add_argument("--users", type=int, default=20, help="locust users, 10 requests a second each")
    parser.add_argument("--quiet-windows", type=int, default=20, help="windows of usual traffic first")
    parser.add_argument("--keep", action="store_true", help="keep the drill's directory (logs)")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    workdir = Path(tempfile.mkdtemp(prefix="ballast-drift-drill-"))
    home = workdir / "bentoml"
    home.mkdir()
    source = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    if not (source / "models" / "fraud-gbt").is_dir():
        sys.exit(f"no fraud models in {source}: run make models first")
    (home / "models").symlink_to(source / "models")
    drill = Drill(home, workdir, {}, args.users)
    drill.server_env.update(
        {"BALLAST_DRIFT_WINDOW_ROWS": str(args.window), "BALLAST_DRIFT_MIN_ROWS": str(args.window // 2)}
    )
    phases: list[Phase] = []
    try:
        drill.start_server()
        phases.append(run_phase(drill, Phase("usual", "quiet"), args.quiet_windows, "windows"))
        phases.append(run_phase(drill, Phase("holidays", "confirmed"), 6, "confirmed"))
        phases[-1].alarm = alarm(drill)
        phases.append(run_phase(drill, Phase("usual", "cleared"), 4, "cleared"))
        phases.append(run_phase(drill, Phase("abroad", "confirmed"), 6, "confirmed"))
        phases[-1].alarm = alarm(drill)
    finally:
        drill.stop_load()
        drill.stop_server()
    misses = judge(phases, sum(s.failures for s in drill.segments))
    text = report(phases, drill, args, started, misses)
    print(text)
    RESULT.write_text(text)
    if args.keep or misses:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if misses:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The rollout drill: real candidates through a real fraud server under locust load (``make
rollout-drill``; ``--short`` in ``make test``). Loopback only, bounded in time, stops by itself.

1. A model store of the drill's own (a copy of the store's models, never the user's store: the
   candidates become fraud-gbt's newest versions) gets the candidates of ``python -m models.build
   --candidates``: ``good`` (the same recipe, another seed), ``wrong`` (shuffled labels), ``failing``
   (NaN on large amounts) and ``slow``. A lifecycle database pins production to the store's primary.
2. ``bentoml serve services.fraud:Fraud`` with an operator (ana) and an approver (bo); locust sends
   valid transactions at a steady rate throughout (RolloutDrillClient in loadtests/fraud_locust.py):
   any answer but a 200 is a failure.
3. ``good``: shadow, then every canary stage; in the middle the server is restarted (the load paused
   meanwhile) and the rollout must resume where it was; then bo approves, the watch passes, and the
   previous version is released.
4. ``wrong``, ``failing`` and ``slow``, one after the other: each must be rolled back automatically
   within ``--bad-timeout`` seconds, by the gate named in the result.
5. The watch: the first version is rolled out again over ``good``, approved, and once it is watched
   the admin API injects faults into it (a share of rows fail; the fallback answers them): the watch
   must move production back to ``good`` by itself.

Checks (exit 1 on a miss): every step's outcome, and no failed request in any load segment. The
result (per step: outcome, gate, seconds; the load's requests and failures) is printed and written
to loadtests/reports/rollout-drill[-short].md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REPORTS = ROOT / "loadtests" / "reports"
ANA, BO = "drill-ana-operator-0123", "drill-bo-approver-01234"
TOKENS = {"ana": {"token": ANA, "roles": ["operator"]}, "bo": {"token": BO, "roles": ["approver"]}}
POLICY: dict[str, Any] = {
    "stages": [0.01, 0.05, 0.2, 1.0],
    "shadow_min_requests": 500,
    "stage_min_s": 8.0,
    "stage_min_requests": 30,
    "latency_min_samples": 30,
    "latency_max_ratio": 1.5,
    "watch_s": 20.0,
    "watch_window_s": 10.0,
    "watch_min_requests": 200,
    "cooldown_s": 0.0,
}
"""The default policy compressed to fit a drill: minutes instead of hours (docs/design/rollouts.md)."""
SHORT = {**POLICY, "stages": [0.05, 1.0], "shadow_min_requests": 300, "stage_min_s": 5.0, "watch_s": 10.0}


@dataclass
class Step:
    name: str
    expected: str
    outcome: str = ""
    gate: str = ""
    seconds: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == self.expected


@dataclass
class Segment:
    """One locust run: its requests and failures."""

    requests: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)


def run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def prepare_store(home: Path, source: Path, env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The drill's model store: (production's fraud-gbt version, candidate kind -> version)."""
    if (source / "models" / "fraud-gbt").is_dir():
        shutil.copytree(source / "models", home / "models", symlinks=True)
    else:
        run([sys.executable, "-m", "models.build", "fraud"], env)
    listed = run(
        [
            sys.executable,
            "-c",
            "import bentoml\n"
            "primary = [m for m in bentoml.models.list('fraud-gbt') if m.info.metadata.get('role') == 'primary']\n"
            "print(max(primary, key=lambda m: m.info.creation_time).tag.version)\n",
        ],
        env,
    )
    production = listed.strip().splitlines()[-1]
    out = run([sys.executable, "-m", "models.build", "--candidates"], env)
    kinds = dict(
        (kind, version)
        for version, kind in re.findall(r"^fraud-gbt:(\w+)(?: \(unchanged\))?: candidate (\w+)", out, re.M)
    )
    return production, kinds


class RolloutEnded(RuntimeError):
    """The rollout ended (its last record: ``last``) before reaching the state waited for."""

    def __init__(self, until: str, last: dict[str, Any]) -> None:
        self.last = last
        super().__init__(f"the rollout ended before {until}: {json.dumps(last)[:600]}")


class Drill:
    def __init__(self, home: Path, workdir: Path, policy: dict[str, Any], users: int) -> None:
        self.workdir = workdir
        self.policy = policy
        self.users = users
        self.env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
        self.server_env = {
            **self.env,
            "BALLAST_TOKENS": json.dumps(TOKENS),
            "BALLAST_STATE_PATH": str(workdir / "lifecycle.sqlite"),
            "BALLAST_LIFECYCLE_SYNC_S": "0.5",
        }
        self.port = 0
        self.server: subprocess.Popen[bytes] | None = None
        self.load: subprocess.Popen[bytes] | None = None
        self.segments: list[Segment] = []
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- processes -------------------------------------------------------------------------------

    def start_server(self) -> None:
        from benchmarks.processes import free_port

        self.port = free_port()
        self.starts += 1
        log = open(self.workdir / f"server-{self.starts}.log", "w")  # noqa: SIM115 -- the process keeps it
        self.server = subprocess.Popen(
            [str(BIN / "bentoml"), "serve", "services.fraud:Fraud", "--port", str(self.port)],
            cwd=ROOT,
            env=self.server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"the server exited; see {log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the server was not ready within 120 s; see {log.name}")

    def stop_server(self) -> None:
        if self.server is None:
            return
        os.killpg(self.server.pid, signal.SIGTERM)
        try:
            self.server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()
        self.server = None

    def start_load(self, limit_s: int, user_class: str = "RolloutDrillClient", stop_timeout_s: int = 0) -> None:
        """Locust (``user_class`` of loadtests/fraud_locust.py) until :meth:`stop_load` (or ``limit_s``,
        its bound); at the end, each user may finish the request it is making for ``stop_timeout_s``."""
        prefix = self.workdir / f"load-{len(self.segments) + 1}"
        self.load = subprocess.Popen(
            [
                str(BIN / "locust"),
                "-f",
                str(ROOT / "loadtests" / "fraud_locust.py"),
                user_class,
                "--headless",
                "--users",
                str(self.users),
                "--spawn-rate",
                str(self.users),
                "--run-time",
                f"{limit_s}s",
                "--stop-timeout",
                str(stop_timeout_s),
                "--host",
                self.url,
                "--csv",
                str(prefix),
                "--only-summary",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(f"{prefix}.log", "w"),  # noqa: SIM115 -- the process keeps it
        )
        self.segments.append(Segment())
        time.sleep(2)  # the users are spawned

    def stop_load(self) -> None:
        if self.load is None:
            return
        self.load.send_signal(signal.SIGTERM)
        self.load.wait(timeout=60)
        self.load = None
        prefix = self.workdir / f"load-{len(self.segments)}"
        segment = self.segments[-1]
        with open(f"{prefix}_stats.csv") as f:
            for row in csv.DictReader(f):
                if row["Name"] == "Aggregated":
                    segment.requests, segment.failures = int(row["Request Count"]), int(row["Failure Count"])
        failures = Path(f"{prefix}_failures.csv")
        if failures.is_file():
            with failures.open() as f:
                segment.errors = [f"{r['Occurrences']} x {r['Error']}" for r in csv.DictReader(f)]

    # --- the admin API ---------------------------------------------------------------------------

    def admin(self, path: str, token: str = ANA, body: Any = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        if body is None:
            answer = httpx.get(f"{self.url}/admin/{path}", headers=headers, timeout=60)
        else:
            answer = httpx.post(f"{self.url}/admin/{path}", json=body, headers=headers, timeout=60)
        if answer.status_code != 200:
            raise RuntimeError(f"/admin/{path}: {answer.status_code} {answer.text}")
        found: dict[str, Any] = answer.json()
        return found

    def rollbacks(self) -> dict[str, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {
            reason: float(value)
            for reason, value in re.findall(r'^ballast_rollbacks_total\{[^}]*reason="(\w+)"[^}]*\} (\S+)$', text, re.M)
        }

    def wait(self, until: str, timeout_s: float) -> dict[str, Any]:
        """Poll /admin/models until the rollout's state is ``until`` (``none``: no rollout); raises
        :class:`RolloutEnded` if the rollout ends first."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.admin("models")
            rollout = state["rollout"]
            if (rollout["state"] if rollout else "none") == until:
                return state
            if rollout is None:
                raise RolloutEnded(until, state["history"][0] if state["history"] else {})
            if time.monotonic() > deadline:
                raise TimeoutError(f"not {until} within {timeout_s:.0f} s: {json.dumps(rollout)[:600]}")
            time.sleep(0.5)

    def start_rollout(self, version: str) -> float:
        self.admin("rollouts", body={"version": version, "policy": self.policy})
        return time.monotonic()


def good_rollout(drill: Drill, good: str, restart: bool, timeout_s: float) -> Step:
    restarted = ", a restart" if restart else ""
    step = Step(f"good: shadow, every stage{restarted}, approval, the watch", "promoted")
    before = drill.rollbacks()
    try:
        return _good_rollout(drill, step, good, restart, timeout_s)
    except RolloutEnded as ended:
        step.outcome = str(ended.last.get("action", "ended"))
        after = drill.rollbacks()
        step.gate = ", ".join(r for r in after if after[r] > before.get(r, 0))
        step.detail = str(ended.last.get("detail", {}).get("reason", ""))[:300]
        return step


def _good_rollout(drill: Drill, step: Step, good: str, restart: bool, timeout_s: float) -> Step:
    started = drill.start_rollout(good)
    if restart:
        at = drill.wait("canary", timeout_s)["rollout"]
        drill.stop_load()
        drill.stop_server()
        drill.start_server()
        resumed = drill.admin("models")["rollout"]
        if resumed is None or (resumed["state"], resumed["stage"]) < (at["state"], at["stage"]):
            step.outcome, step.detail = "not resumed", f"before {at}, after {resumed}"
            return step
        step.detail = f"restarted at {at['state']} stage {at['stage']}, resumed at stage {resumed['stage']}; "
        drill.start_load(3600)
    drill.wait("awaiting_approval", timeout_s)
    drill.admin("rollouts/approve", BO, {})
    watched = drill.wait("watching", 30)
    if watched["previous"] is None:
        step.outcome, step.detail = "previous not kept", json.dumps(watched)[:300]
        return step
    done = drill.wait("none", timeout_s)
    step.seconds = time.monotonic() - started
    last = done["history"][0]
    step.outcome = "promoted" if done["production"] == good and last["action"] == "watch_passed" else last["action"]
    step.detail += f"production {done['production']}, previous {done['previous']}"
    return step


def bad_rollout(drill: Drill, kind: str, version: str, timeout_s: float) -> Step:
    step = Step(f"{kind}: stopped automatically", "rolled_back")
    before = drill.rollbacks()
    started = drill.start_rollout(version)
    try:
        done = drill.wait("none", timeout_s)
    except TimeoutError as exc:
        step.outcome, step.detail = "still running", str(exc)
        drill.admin("rollouts/abort", body={"reason": "the drill ran out of time"})
        return step
    step.seconds = time.monotonic() - started
    record = next(h for h in done["history"] if h["action"] in ("rollback", "abort", "approve"))
    step.outcome = "rolled_back" if record["action"] == "rollback" else record["action"]
    after = drill.rollbacks()
    step.gate = ", ".join(r for r in after if after[r] > before.get(r, 0))
    step.detail = str(record["detail"].get("reason", ""))[:160]
    return step


def watch_rollback(drill: Drill, first: str, good: str, timeout_s: float) -> Step:
    step = Step("the first version again, approved, faults in production: the watch rolls back", "rolled_back")
    before = drill.rollbacks()
    drill.start_rollout(first)
    drill.wait("awaiting_approval", timeout_s)
    drill.admin("rollouts/approve", BO, {})
    drill.wait("watching", 30)
    injected = time.monotonic()
    drill.admin("faults", body={"error_rate": 0.2, "seed": 7})
    try:
        done = drill.wait("none", timeout_s)
    finally:
        drill.admin("faults", body={})
    step.seconds = time.monotonic() - injected
    after = drill.rollbacks()
    step.gate = ", ".join(r for r in after if after[r] > before.get(r, 0))
    back = done["production"] == good and done["history"][0]["action"] in ("rollback", "alias")
    step.outcome = "rolled_back" if back else f"production {done['production']}"
    step.detail = f"production back to {done['production']}"
    return step


def report(steps: list[Step], segments: list[Segment], args: argparse.Namespace, started: str) -> str:
    lines = [
        f"# Rollout drill{' (short)' if args.short else ''}",
        "",
        f"`python -m loadtests.rollout_drill{' --short' if args.short else ''}`, {started}, "
        f"{platform.machine()}, {os.cpu_count()} cores; locust {args.users} users at 10 req/s each.",
        "",
        "| step | expected | outcome | gate | seconds | detail |",
        "|---|---|---|---|---|---|",
    ]
    for s in steps:
        mark = "" if s.ok else " **(miss)**"
        lines.append(f"| {s.name} | {s.expected} | {s.outcome}{mark} | {s.gate} | {s.seconds:.0f} | {s.detail} |")
    total, failed = sum(s.requests for s in segments), sum(s.failures for s in segments)
    lines += ["", f"Load: {total:,} requests in {len(segments)} segments, {failed} failed."]
    for segment in segments:
        lines += [f"- {e}" for e in segment.errors[:5]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="two stages, no restart, no second rollout")
    parser.add_argument("--users", type=int, default=20, help="locust users, 10 requests a second each")
    parser.add_argument("--timeout", type=float, default=240, help="seconds a rollout may take to finish")
    parser.add_argument("--bad-timeout", type=float, default=120, help="seconds a bad candidate may live")
    parser.add_argument("--keep", action="store_true", help="keep the drill's directory (store, logs)")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    workdir = Path(tempfile.mkdtemp(prefix="ballast-drill-"))
    home = workdir / "bentoml"
    home.mkdir()
    source = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    drill = Drill(home, workdir, SHORT if args.short else POLICY, args.users)
    steps: list[Step] = []
    try:
        production, kinds = prepare_store(home, source, drill.env)
        from runtime.registry import LifecycleStore

        pinned = LifecycleStore(workdir / "lifecycle.sqlite")
        pinned.move_alias("fraud-gbt", "production", production, "operator:drill", "the version before the drill")
        pinned.close()
        drill.start_server()
        drill.start_load(3600)
        steps.append(good_rollout(drill, kinds["good"], restart=not args.short, timeout_s=args.timeout))
        for kind in ("wrong", "failing", "slow"):
            steps.append(bad_rollout(drill, kind, kinds[kind], args.bad_timeout))
        if not args.short:
            steps.append(watch_rollback(drill, production, kinds["good"], args.timeout))
    except BaseException:
        drill.stop_load()
        drill.stop_server()
        print_logs(workdir)
        print(f"kept {workdir}")
        raise
    drill.stop_load()
    drill.stop_server()
    text = report(steps, drill.segments, args, started)
    print(text)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / f"rollout-drill{'-short' if args.short else ''}.md").write_text(text + "\n")
    failed = sum(s.failures for s in drill.segments)
    ok = not failed and all(s.ok for s in steps) and len(steps) == (4 if args.short else 5)
    if not ok:
        print_logs(workdir)
    if args.keep or not ok:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if not ok:
        sys.exit(1)


def print_logs(workdir: Path, lines: int = 60) -> None:
    """The end of each server log of the drill (when it failed: CI keeps only what is printed)."""
    for log in sorted(workdir.glob("server-*.log")):
        print(f"--- the last {lines} lines of {log.name}")
        print("\n".join(log.read_text(errors="replace").splitlines()[-lines:]))


if __name__ == "__main__":
    main()

"""A rollout over HTTP against real servers: a new version of fraud-gbt (the same file stored again)
goes through the shadow and the canary stages under traffic, is approved by another principal than
the one who started it, becomes production with no failed request, and is rolled back; a restart in
the middle of a rollout resumes it from the lifecycle database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from models import fraud
from runtime.registry import LifecycleStore

ROOT = Path(__file__).resolve().parents[2]
ANA, BO = "ana-operator-token-0123", "bo-approver-token-01234"
TOKENS = json.dumps({"ana": {"token": ANA, "roles": ["operator"]}, "bo": {"token": BO, "roles": ["approver"]}})
POLICY = {
    "stages": [0.5, 1.0],
    "shadow_min_requests": 100,
    "stage_min_s": 2.0,
    "stage_min_requests": 60,
    "latency_max_ratio": 3.0,
    "watch_s": 3.0,
}
TRANSACTIONS = fraud.generate(400, seed=17)[0]


@pytest.fixture(scope="module")
def versions(bentoml_home: Path) -> tuple[str, str]:
    """(production, candidate): fraud-gbt's version, and a second version stored after it holding the
    same model file and reference files (not its held-out metrics), so as good as production; as
    the newest version, it is what later tests' servers deploy, drift watched."""
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    script = (
        "import bentoml, sys\n"
        "from models.store import store_onnx\n"
        "model = bentoml.models.get('fraud-gbt:latest')\n"
        "print(model.tag.version)\n"
        "files = {f: open(model.path_of(f), 'rb').read() for f in ('reference.json', 'reference_sample.npy')}\n"
        "onnx = open(model.path_of('model.onnx'), 'rb').read()\n"
        "print(store_onnx('fraud-gbt', onnx, metadata={'drill': 'copy'}, files=files))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    production, tag = out.stdout.strip().splitlines()[-2:]
    return production, tag.split(":")[1]


def pinned(state: Path, production: str) -> dict[str, str]:
    """A lifecycle database whose production is ``production`` (else the newest version, the
    candidate, would be), and the settings of a server that uses it."""
    store = LifecycleStore(state)
    store.move_alias("fraud-gbt", "production", production, "operator:test", "the version before the drill")
    store.close()
    return {"BALLAST_TOKENS": TOKENS, "BALLAST_STATE_PATH": str(state), "BALLAST_LIFECYCLE_SYNC_S": "0.2"}


def admin(url: str, path: str, token: str, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if body is None:
        return httpx.get(f"{url}/admin/{path}", headers=headers, timeout=60)
    return httpx.post(f"{url}/admin/{path}", json=body, headers=headers, timeout=60)


class Traffic:
    """Clients sending transactions until stopped, keeping every status and who answered."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.statuses: Counter[int] = Counter()
        self.routes: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=10) as client:
            i = index
            while not self._stop.is_set():
                answer = client.post(f"{self.url}/score", json=TRANSACTIONS[i % len(TRANSACTIONS)])
                self.statuses[answer.status_code] += 1
                if answer.status_code == 200:
                    body = answer.json()
                    self.routes[body["route"], body["model"]["version"]] += 1
                i += 4

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def wait_for(url: str, state: str | None, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        described = admin(url, "models", ANA).json()
        rollout = described["rollout"]
        if (rollout["state"] if rollout else None) == state:
            return dict(described)
        assert time.monotonic() < deadline, f"the rollout never reached {state}: {described}"
        time.sleep(0.2)


@pytest.fixture
def rolling(serve: Callable[..., Any], tmp_path: Path, versions: tuple[str, str]) -> Iterator[str]:
    with serve("services.fraud:Fraud", **pinned(tmp_path / "lifecycle.sqlite", versions[0])) as url:
        yield str(url)


def test_a_good_candidate_reaches_production_with_an_approval_and_no_failed_request(
    rolling: str, versions: tuple[str, str]
) -> None:
    url, (production, candidate) = rolling, versions
    assert admin(url, "models", ANA).json()["production"] == production
    with Traffic(url) as traffic:
        started = admin(url, "rollouts", ANA, {"version": candidate, "policy": POLICY})
        assert started.status_code == 200, started.text
        assert started.json()["rollout"]["state"] == "shadow"
        wait_for(url, "canary")
        waiting = wait_for(url, "awaiting_approval")
        assert waiting["rollout"]["share"] == 1.0
        assert admin(url, "rollouts/approve", ANA, {}).status_code == 403  # ana is an operator
        approved = admin(url, "rollouts/approve", BO, {})
        assert approved.status_code == 200, approved.text
        watched = approved.json()
        assert (watched["production"], watched["previous"]) == (candidate, production)
        assert watched["rollout"]["state"] == "watching"  # production now, the previous version still warm
        promoted = wait_for(url, None)
        assert (promoted["production"], promoted["previous"]) == (candidate, None)  # the watch passed: released
        time.sleep(1)
    assert set(traffic.statuses) == {200}, traffic.statuses  # no failed request through every switch
    assert traffic.routes[("canary", candidate)] > 0
    assert traffic.routes[("production", production)] > 0
    assert traffic.routes[("production", candidate)] > 0
    history = [h["action"] for h in admin(url, "models", BO).json()["history"]]
    assert history[:3] == ["watch_passed", "approve", "alias"]
    assert {"start", "advance", "await_approval"} <= set(history)
    back = admin(url, "rollback", BO, {"reason": "the drill goes back"})
    assert back.json()["production"] == production  # loaded again from the store
    answer = httpx.post(f"{url}/score", json=TRANSACTIONS[0], timeout=10).json()
    assert answer["model"]["version"] == production


def test_rollout_requests_are_checked(rolling: str, versions: tuple[str, str]) -> None:
    url, candidate = rolling, versions[1]
    assert admin(url, "rollouts", ANA, {"version": "nosuchversion"}).status_code == 404
    latest = admin(url, "rollouts", ANA, {"version": "latest"})  # the newest in the store: the candidate
    assert latest.status_code == 200, latest.text
    assert latest.json()["rollout"]["version"] == candidate  # recorded as the version it resolved to
    assert admin(url, "rollouts/abort", ANA, {"reason": "a name, not a version"}).status_code == 200
    assert admin(url, "rollouts/approve", BO, {}).status_code == 409  # nothing to approve
    bad_policy = admin(url, "rollouts", ANA, {"version": candidate, "policy": {"stages": [0.5, 0.2]}})
    assert bad_policy.status_code == 422
    assert admin(url, "rollouts", BO, {"version": candidate}).status_code == 403  # bo is an approver
    floors = {**POLICY, "metric_floors": {"roc_auc": 0.01}}  # the copy was stored without held-out metrics
    under = admin(url, "rollouts", ANA, {"version": candidate, "policy": floors})
    assert under.status_code == 422, under.text
    [field] = under.json()["error"]["fields"]
    assert (field["rule"], field["message"]) == ("metric_floor", "roc_auc is not in both versions' held-out metrics")
    assert admin(url, "rollouts", ANA, {"version": candidate, "policy": POLICY}).status_code == 200
    assert admin(url, "rollouts", ANA, {"version": candidate}).status_code == 409  # one at a time
    assert admin(url, "reload", ANA, {}).status_code == 409  # not during a rollout
    aborted = admin(url, "rollouts/abort", ANA, {"reason": "the test is done"})
    assert aborted.json()["rollout"] is None


def test_a_restart_in_the_middle_of_a_rollout_resumes_it(
    serve: Callable[..., Any], tmp_path: Path, versions: tuple[str, str]
) -> None:
    env = pinned(tmp_path / "lifecycle.sqlite", versions[0])
    candidate = versions[1]
    slow = {**POLICY, "stage_min_s": 600.0}  # it stays in its first canary stage
    with serve("services.fraud:Fraud", **env) as url:
        assert admin(str(url), "rollouts", ANA, {"version": candidate, "policy": slow}).status_code == 200
        with Traffic(str(url)):
            wait_for(str(url), "canary")
    with serve("services.fraud:Fraud", **env) as url:  # a new process on the same database
        described = admin(str(url), "models", ANA).json()
        assert (described["rollout"]["state"], described["rollout"]["share"]) == ("canary", 0.5)
        routes = Counter(
            httpx.post(
                f"{url}/score", json=TRANSACTIONS[i], headers={"X-Routing-Key": f"caller-{i}"}, timeout=10
            ).json()["route"]
            for i in range(60)
        )
        assert routes["canary"] > 0
        assert routes["production"] > 0
        admin(str(url), "rollouts/abort", ANA, {"reason": "the test is done"})


def test_the_command_line_drives_a_rollout(
    rolling: str, versions: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from services.cli import main

    url, candidate = rolling, versions[1]
    common = ["--url", url, "--token", ANA]
    assert main([*common, "rollout", "start", candidate, "--policy", json.dumps(POLICY)]) == 0
    assert f"rollout     {candidate}: shadow, 0% of the traffic" in capsys.readouterr().out
    assert main([*common, "--json", "rollout", "status"]) == 0
    assert json.loads(capsys.readouterr().out)["rollout"]["version"] == candidate
    assert main([*common, "rollout", "approve"]) == 1  # ana is an operator; and nothing awaits approval
    assert "refused: 403" in capsys.readouterr().err
    assert main([*common, "rollout", "abort", "--reason", "the cli test is done"]) == 0
    assert "rollout     none" in capsys.readouterr().out
    assert main(["--url", "http://127.0.0.1:9", "--token", ANA, "models"]) == 2


def test_no_answer_comes_from_the_cache_while_a_rollout_gathers_evidence(
    serve: Callable[..., Any], tmp_path: Path, versions: tuple[str, str]
) -> None:
    """A cached production answer would look faster than the candidate and never fail: the gates
    would compare a cache with a model. While a rollout runs, both arms answer from their models."""
    from tests.integration.test_cache import lookups

    env = {**pinned(tmp_path / "lifecycle.sqlite", versions[0]), "BALLAST_CACHE_MAX_BYTES": "1048576"}
    with serve("services.fraud:Fraud", **env) as url:
        for _ in range(2):
            httpx.post(f"{url}/score", json=TRANSACTIONS[0], timeout=10)
        assert (lookups(url, "hit"), lookups(url, "miss")) == (1, 1)
        started = admin(url, "rollouts", ANA, {"version": versions[1], "policy": {**POLICY, "stages": [1.0]}})
        assert started.status_code == 200, started.text
        routes = Counter(
            httpx.post(f"{url}/score", json=TRANSACTIONS[0], timeout=10).json()["route"] for _ in range(20)
        )
        assert routes == {"production": 20}  # in shadow, production answers: from its model
        assert (lookups(url, "hit"), lookups(url, "miss")) == (1, 1)
        assert admin(url, "rollouts/abort", ANA, {"reason": "the cache test is done"}).status_code == 200
        wait_for(url, None)
        httpx.post(f"{url}/score", json=TRANSACTIONS[0], timeout=10)
        assert lookups(url, "hit") == 2  # the cache serves again once no rollout runs

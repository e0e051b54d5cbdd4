"""A user's own model, the way README.md tells it: train and export (examples/wine/train.py), store
the ONNX files with `python -m models.store`, declare the service (examples/wine/service.py, the
README's example verbatim), serve it by name, call it over HTTP and with BentoML's client, load test
it against its own SLOs, and build its bento -- which holds that service and nothing else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bentoml
import httpx
import pytest
from sklearn.datasets import load_wine

from loadtests import gate
from services.find import find
from tests.integration.conftest import build_bento

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "examples" / "wine" / "service.py"
TOKEN = "admin-token-0123456789"


def test_the_readme_example_is_the_example_service() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert SERVICE.read_text() in blocks
    code = [line for line in SERVICE.read_text().splitlines() if line.strip()]
    assert len(code) <= 25, f"the example service has {len(code)} lines of code"


@pytest.fixture(scope="module")
def wine_home(bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wine models trained and stored as README.md says, in the tests' model store."""
    out = tmp_path_factory.mktemp("wine")
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    subprocess.run([sys.executable, "examples/wine/train.py", str(out)], cwd=ROOT, env=env, check=True, timeout=300)
    for name in ("wine-gbt", "wine-logreg"):
        command = [sys.executable, "-m", "models.store", name, str(out / f"{name}.onnx")]
        command += ["--reference", str(out / "train.csv"), "--target", "cultivar"]
        subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=120, capture_output=True)
    return bentoml_home


@pytest.fixture(scope="module")
def wine_url(wine_home: Path, serve: Callable[..., Any]) -> Iterator[str]:
    target = find("examples/wine/service.py").target
    assert target == "examples.wine.service:WineService"
    with serve(target, BALLAST_ADMIN_TOKEN=TOKEN) as url:
        yield url


def wine(index: int) -> dict[str, float]:
    data = load_wine()
    return {name.replace("/", "_"): float(v) for name, v in zip(data.feature_names, data.data[index], strict=True)}


def test_every_real_wine_is_classified_by_the_primary(wine_url: str) -> None:
    data = load_wine()
    batch = [wine(i) for i in range(0, len(data.data), 3)]  # 60 of the 178 wines, training and held-out
    response = httpx.post(f"{wine_url}/predict_batch", json={"records": batch}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["served_by"] == "wine-gbt"
    assert not body["degraded"]
    labels = [row["label"] for row in body["results"]]
    accuracy = sum(int(a == b) for a, b in zip(labels, data.target[::3], strict=True)) / len(labels)
    assert accuracy > 0.9
    one = httpx.post(f"{wine_url}/predict", json=wine(0), timeout=10).json()
    assert set(one) == {"label", "probabilities", "request_id", "served_by", "degraded", "model", "route"}
    assert one["route"] == "production"
    assert len(one["probabilities"]) == 3


def test_learned_ranges_refuse_nonsense_with_every_field_named(wine_url: str) -> None:
    bad = {**wine(0), "alcohol": 140.0, "proline": -5000.0, "hue": "pale"}
    response = httpx.post(f"{wine_url}/predict", json=bad, timeout=10)
    assert response.status_code == 422
    fields = {(f["path"], f["rule"]) for f in response.json()["error"]["fields"]}
    assert fields == {("alcohol", "range"), ("proline", "range"), ("hue", "type")}  # every violation at once
    message = next(f["message"] for f in response.json()["error"]["fields"] if f["path"] == "alcohol")
    assert re.fullmatch(r"must be within \[[0-9.]+, [0-9.]+\]", message), message  # rounded, no float noise


def test_bentomls_client_calls_the_routes_by_name(wine_url: str) -> None:
    with bentoml.SyncHTTPClient(wine_url) as client:
        answer = client.predict(**wine(100))
        assert answer["served_by"] == "wine-gbt"
        batch = client.predict_batch(records=[wine(1), wine(177)])
        assert [r["label"] for r in batch["results"]] == [0, 2]


def test_when_both_models_fail_the_rule_stage_answers(wine_url: str) -> None:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    try:
        for model in ("wine-gbt", "wine-logreg"):
            answer = httpx.post(f"{wine_url}/admin/faults", json={"error_rate": 1.0, "model": model}, headers=admin)
            assert answer.status_code == 200, answer.text
        body = httpx.post(f"{wine_url}/predict", json=wine(5), timeout=10).json()
        assert (body["served_by"], body["degraded"], body["label"]) == ("most-common-cultivar", True, 1)
    finally:
        httpx.post(f"{wine_url}/admin/reload", json={}, headers=admin, timeout=60)  # healed, breakers closed


def test_the_slo_gate_drives_the_service_from_its_openapi_examples(
    wine_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = gate.main(
        [
            "--service",
            "examples/wine/service.py",
            "--url",
            wine_url,
            "--users",
            "4",
            "--duration",
            "4s",
            "--slo-file",
            "examples/wine/slo.toml",
            "--reports",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "load: loadtests/openapi_locust.py" in out
    assert (tmp_path / "wine-normal_stats.csv").exists()
    with pytest.raises(SystemExit):  # the fraud SLO file has no [wine] section: an error, not a default
        gate.main(["--url", wine_url, "--duration", "1s", "--reports", str(tmp_path)])


def test_the_bento_holds_the_wine_service_alone(wine_home: Path) -> None:
    bento = build_bento("examples/wine/service.py", wine_home)
    assert bento.tag.startswith("ballast-wine:")
    assert bento.models == {"wine-gbt", "wine-logreg"}
    assert "examples/wine/service.py" in bento.files
    assert not {"services/fraud.py", "services/digits.py", "services/tensor.py", "models/fraud.py"} & bento.files
    assert "examples/wine/train.py" not in bento.files  # training is not serving

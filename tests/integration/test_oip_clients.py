"""V2 clients nobody here wrote, against a real Ballast server: Triton's ``tritonclient.http``
reads the server's and the model's metadata and configuration, checks readiness, and infers with
JSON and with binary tensors, answers equal to the service's own route; its errors carry the
server's message. ``tritonclient.grpc`` does the same over gRPC (raw tensors), its errors as status
codes, and grpc.health.v1 says SERVING."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from sklearn.datasets import load_digits
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import free_port

IMAGES = load_digits().images[:7].astype(np.float32)


@pytest.fixture
def client(digits_url: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=digits_url.removeprefix("http://"))


def test_tritonclient_reads_metadata_readiness_and_configuration(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("digits-mlp")
    assert not client.is_model_ready("digits-mlp", model_version="0")
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "model_configuration"]
    metadata = client.get_model_metadata("digits-mlp")
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    config = client.get_model_config("digits-mlp")
    assert config["input"][0]["dims"] == [64]


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_infers_in_json_and_binary_as_the_services_own_route(
    client: triton.InferenceServerClient, digits_url: str, binary: bool
) -> None:
    import httpx

    own = httpx.post(f"{digits_url}/classify", json={"images": IMAGES.tolist()}, timeout=10).json()["results"]
    tensor = triton.InferInput("input", [7, 64], "FP32")
    tensor.set_data_from_numpy(IMAGES.reshape(7, 64), binary_data=binary)
    wanted = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "label")]
    result = client.infer("digits-mlp", [tensor], outputs=wanted, request_id="from-triton")
    assert result.get_response()["id"] == "from-triton"
    assert result.as_numpy("label").tolist() == [r["label"] for r in own]
    np.testing.assert_allclose(result.as_numpy("probabilities"), [r["probabilities"] for r in own], atol=1e-6)


def test_tritonclient_errors_carry_the_servers_message(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input", [1, 8, 8], "FP32")
    tensor.set_data_from_numpy(IMAGES[:1], binary_data=True)
    with pytest.raises(InferenceServerException, match=r"the model takes \[-1, 64\]"):
        client.infer("digits-mlp", [tensor])
    with pytest.raises(InferenceServerException, match="no model 'resnet'"):
        client.get_model_metadata("resnet")


@pytest.fixture(scope="module")
def grpc_digits(serve: Callable[..., Any]) -> Iterator[tuple[str, str]]:
    """A digits server with gRPC on: (its HTTP URL, its gRPC address)."""
    port = free_port()
    with serve("services.digits:Digits", BALLAST_GRPC_PORT=str(port)) as url:
        yield str(url), f"127.0.0.1:{port}"


def grpc_client(address: str) -> dict[str, Any]:
    """What tritonclient.grpc makes of the server (tests/integration/grpc_client.py, in a process of
    its own: Triton's client and Ballast's generated code both name their messages ``inference.*``,
    which one process's protobuf cannot hold twice)."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("grpc_client.py")), address],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_tritonclient_grpc_reads_metadata_infers_and_gets_status_codes(grpc_digits: tuple[str, str]) -> None:
    import httpx

    url, address = grpc_digits
    found = grpc_client(address)
    assert found["live"] is True
    assert found["ready"] is True
    assert found["model_ready"] is True
    assert found["unknown_model_ready"] is False
    assert found["extensions"] == ["binary_tensor_data", "model_configuration"]
    assert found["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "64"]}]
    config = httpx.get(f"{url}/v2/models/digits-mlp/config").json()  # what the REST route says
    assert config["dynamic_batching"] == {}
    over_grpc = found["config"]
    assert "dynamic_batching" in over_grpc  # present (empty: JSON leaves its defaults out)
    assert (over_grpc["name"], over_grpc["platform"], over_grpc["backend"], over_grpc["max_batch_size"]) == (
        config["name"],
        config["platform"],
        config["backend"],
        config["max_batch_size"],
    )
    for side in ("input", "output"):
        assert [(t["name"], t["data_type"], [int(d) for d in t.get("dims", [])]) for t in over_grpc[side]] == [
            (t["name"], t["data_type"], t["dims"]) for t in config[side]
        ]
    own = httpx.post(f"{url}/classify", json={"images": IMAGES.tolist()}, timeout=10).json()["results"]
    assert found["id"] == "over-grpc"
    assert found["served_by"] == "digits-mlp"
    assert found["label"] == [r["label"] for r in own]
    np.testing.assert_allclose(found["probabilities"], [r["probabilities"] for r in own], atol=1e-6)
    assert found["bad_shape"][0] == "StatusCode.INVALID_ARGUMENT"
    assert "the model takes [-1, 64]" in found["bad_shape"][1]
    assert found["unknown_model"][0] == "StatusCode.NOT_FOUND"


def test_grpc_health_is_served(grpc_digits: tuple[str, str]) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    _, address = grpc_digits
    with grpc.insecure_channel(address) as channel:
        checked = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=10
        )
    assert checked.status == health_pb2.HealthCheckResponse.SERVING


KSERVE = Path(__file__).resolve().parents[2] / ".venv-kserve" / "bin" / "python"


def test_kserves_own_clients_read_readiness_and_infer_over_rest_and_grpc(grpc_digits: tuple[str, str]) -> None:
    """KServe's InferenceRESTClient (v2) and InferenceGRPCClient, from a virtual environment of their
    own (tests/integration/kserve_client.py): answers equal to the service's own route."""
    import httpx

    assert KSERVE.exists(), "KServe's clients are missing: make kserve-client (make unit installs them)"
    url, address = grpc_digits
    done = subprocess.run(
        [str(KSERVE), str(Path(__file__).with_name("kserve_client.py")), url, address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    pixels = (np.arange(7 * 64, dtype=np.float32).reshape(7, 64) % 17).astype(np.float32)  # as the script sends
    own = httpx.post(f"{url}/classify", json={"images": pixels.reshape(7, 8, 8).tolist()}, timeout=10).json()
    labels = [r["label"] for r in own["results"]]
    probabilities = [r["probabilities"] for r in own["results"]]
    rest, over_grpc = found["rest"], found["grpc"]
    assert (rest["live"], rest["ready"], rest["model_ready"], rest["unknown_model_ready"]) == (True, True, True, False)
    for binary in ("binary=False", "binary=True"):
        answer = rest[binary]
        assert (answer["id"], answer["model"]) == (f"kserve-rest-{binary.removeprefix('binary=')}", "digits-mlp")
        assert answer["label"] == labels
        np.testing.assert_allclose(answer["probabilities"], probabilities, atol=1e-6)
    assert rest["fallback_by_name"] == {"model": "digits-mlp-small", "served_by": "digits-mlp-small"}
    assert rest["bad_shape"][0] == 400
    assert "the model takes [-1, 64]" in rest["bad_shape"][1]
    assert (over_grpc["live"], over_grpc["ready"], over_grpc["model_ready"]) == (True, True, True)
    assert (over_grpc["answer"]["id"], over_grpc["answer"]["model"]) == ("kserve-grpc", "digits-mlp")
    assert over_grpc["answer"]["label"] == labels
    np.testing.assert_allclose(over_grpc["answer"]["probabilities"], probabilities, atol=1e-6)
    assert over_grpc["unknown_model"][0] == "StatusCode.NOT_FOUND"

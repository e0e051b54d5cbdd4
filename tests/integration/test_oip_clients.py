"""A V2 client nobody here wrote, against a real Ballast server: Triton's ``tritonclient.http``
reads the server's and the model's metadata and configuration, checks readiness, and infers with
JSON and with binary tensors, answers equal to the service's own route; its errors carry the
server's message."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from sklearn.datasets import load_digits
from tritonclient.utils import InferenceServerException

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

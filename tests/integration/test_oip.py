"""The Open Inference Protocol's REST routes on real servers, spoken over HTTP: server and model
metadata, health, Triton's configuration, inference in JSON and with binary tensors both ways
answering as the service's own route does, and the errors a V2 client gets (400 naming the input,
404, 405, 413), in the protocol's ``{"error": ...}`` form."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from sklearn.datasets import load_digits

from tests import onnx_factory

ROOT = Path(__file__).resolve().parents[2]

IMAGES = load_digits().images[:5].astype(np.float32)


def infer_json(url: str, pixels: np.ndarray, **extra: Any) -> httpx.Response:
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": list(pixels.shape), "data": pixels.ravel().tolist()}]
    }
    return httpx.post(f"{url}/v2/models/digits-mlp/infer", json={**body, **extra}, timeout=10)


def test_server_and_model_metadata_health_and_config(digits_url: str) -> None:
    server = httpx.get(f"{digits_url}/v2", timeout=10).json()
    assert server["name"] == "ballast-digits"
    assert server["extensions"] == ["binary_tensor_data", "model_configuration"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", server["version"])
    assert httpx.get(f"{digits_url}/v2/health/live", timeout=10).json() == {"live": True}
    assert httpx.get(f"{digits_url}/v2/health/ready", timeout=10).json() == {"ready": True}
    model = httpx.get(f"{digits_url}/v2/models/digits-mlp", timeout=10).json()
    assert model["platform"] == "onnxruntime_onnx"
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert {o["name"]: o["datatype"] for o in model["outputs"]} == {"label": "INT64", "probabilities": "FP32"}
    [version] = model["versions"]
    by_version = httpx.get(f"{digits_url}/v2/models/digits-mlp/versions/{version}", timeout=10).json()
    assert by_version == model
    ready = httpx.get(f"{digits_url}/v2/models/digits-mlp/versions/{version}/ready", timeout=10)
    assert ready.json() == {"name": "digits-mlp", "ready": True}
    config = httpx.get(f"{digits_url}/v2/models/digits-mlp/config", timeout=10).json()
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [64]}]
    assert config["max_batch_size"] >= 1
    assert "dynamic_batching" in config


def test_inference_in_json_and_binary_answers_as_the_services_own_route(digits_url: str) -> None:
    own = httpx.post(f"{digits_url}/classify", json={"images": IMAGES.tolist()}, timeout=10).json()["results"]
    flat = IMAGES.reshape(5, 64)
    answer = infer_json(digits_url, flat, id="abc")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["model_name"] == "digits-mlp"
    assert found["id"] == "abc"
    assert found["parameters"]["served_by"] == "digits-mlp"
    assert found["parameters"]["degraded"] is False
    outputs = {o["name"]: o for o in found["outputs"]}
    assert outputs["label"]["data"] == [r["label"] for r in own]
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])
    np.testing.assert_allclose(probabilities, [r["probabilities"] for r in own], atol=1e-6)

    header = orjson.dumps(
        {
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [5, 64], "parameters": {"binary_data_size": flat.nbytes}}
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}],
        }
    )
    binary = httpx.post(
        f"{digits_url}/v2/models/digits-mlp/infer",
        content=header + flat.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert binary.status_code == 200, binary.text
    length = int(binary.headers["inference-header-content-length"])
    head = orjson.loads(binary.content[:length])
    assert [o["name"] for o in head["outputs"]] == ["probabilities", "label"]
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 5 * 10 * 4}
    assert head["outputs"][1]["data"] == [r["label"] for r in own]
    np.testing.assert_allclose(np.frombuffer(binary.content[length:], "<f4").reshape(5, 10), probabilities, atol=1e-6)


def test_a_v2_client_gets_the_protocols_errors(digits_url: str, fraud_url: str) -> None:
    bad_shape = infer_json(digits_url, IMAGES)  # 8 x 8 where the model takes 64 values: never reshaped
    assert bad_shape.status_code == 400
    assert bad_shape.json()["fields"][0]["path"] == "inputs[0].shape"
    assert "the model takes [-1, 64]" in bad_shape.json()["error"]
    out_of_range = infer_json(digits_url, np.full((1, 64), 99, np.float32))  # the service's own range holds
    assert out_of_range.status_code == 400
    assert "error" in out_of_range.json()
    unknown = httpx.get(f"{digits_url}/v2/models/nope", timeout=10)
    assert (unknown.status_code, set(unknown.json())) == (404, {"error"})
    no_version = httpx.get(f"{digits_url}/v2/models/digits-mlp/versions/0/ready", timeout=10)
    assert no_version.status_code == 404
    assert httpx.get(f"{digits_url}/v2/models/digits-mlp/nothing", timeout=10).status_code == 404
    wrong_method = httpx.get(f"{digits_url}/v2/models/digits-mlp/infer", timeout=10)
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")
    huge = httpx.post(f"{digits_url}/v2/models/digits-mlp/infer", content=b" " * (64 * 1024 * 1024), timeout=30)
    assert huge.status_code == 413
    records = httpx.post(f"{fraud_url}/v2/models/fraud-gbt/infer", json={"inputs": []}, timeout=10)
    assert records.status_code == 400
    assert records.json()["fields"][0]["path"] == "inputs"
    documented = httpx.get(f"{fraud_url}/v2/openapi.json", timeout=10).json()["paths"]
    assert {"/v2/models/fraud-gbt", "/v2/models/fraud-gbt/infer"} <= set(documented)


def test_the_v2_documents_example_is_answered(digits_url: str) -> None:
    document = httpx.get(f"{digits_url}/v2/openapi.json", timeout=10).json()
    operation = document["paths"]["/v2/models/digits-mlp/infer"]["post"]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    answered = httpx.post(f"{digits_url}/v2/models/digits-mlp/infer", json=example, timeout=10)
    assert answered.status_code == 200, answered.text
    assert [o["name"] for o in answered.json()["outputs"]] == ["label", "probabilities"]
    assert set(operation["responses"]) == {"200", "400", "404", "413", "500", "503", "504"}  # no key set
    assert operation["responses"]["400"]["content"]["application/json"]["schema"]["required"] == ["error"]


def v2_input(**changes: Any) -> dict[str, Any]:
    return {"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [1.0] * 64, **changes}


def v2_binary(size: int, **changes: Any) -> dict[str, Any]:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 64], "parameters": {"binary_data_size": size}}
    return {**tensor, **changes}


def framed(document: Any, binary: bytes = b"", length: int | None = None) -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps(document)
    return head + binary, {"Inference-Header-Content-Length": str(len(head) if length is None else length)}


BAD_V2: list[tuple[str, bytes, dict[str, str]]] = [
    ("element count not the shape's", orjson.dumps({"inputs": [v2_input(data=[1.0] * 63)]}), {}),
    ("negative dimension", orjson.dumps({"inputs": [v2_input(shape=[-1, 64])]}), {}),
    ("huge dimensions", orjson.dumps({"inputs": [v2_input(shape=[2**31 - 1, 64])]}), {}),
    ("rank nine", orjson.dumps({"inputs": [v2_input(shape=[1] * 9)]}), {}),
    ("ragged data", orjson.dumps({"inputs": [v2_input(data=[[1.0] * 32, [1.0] * 31])]}), {}),
    ("booleans for FP32", orjson.dumps({"inputs": [v2_input(data=[True] * 64)]}), {}),
    ("strings for FP32", orjson.dumps({"inputs": [v2_input(data=["1"] * 64)]}), {}),
    ("FP32 beyond its range", orjson.dumps({"inputs": [v2_input(data=[1e39] * 64)]}), {}),
    ("another datatype", orjson.dumps({"inputs": [v2_input(datatype="FP64")]}), {}),
    ("an unknown datatype", orjson.dumps({"inputs": [v2_input(datatype="FP8")]}), {}),
    ("no inputs", orjson.dumps({"inputs": []}), {}),
    ("an unknown input", orjson.dumps({"inputs": [v2_input(), v2_input(name="other")]}), {}),
    ("an unknown output", orjson.dumps({"inputs": [v2_input()], "outputs": [{"name": "logits"}]}), {}),
    ("binary size beyond the body", *framed({"inputs": [v2_binary(256)]}, bytes(100))),
    ("binary size not the shape's", *framed({"inputs": [v2_binary(252)]}, bytes(252))),
    ("bytes nobody claims", *framed({"inputs": [v2_binary(256)]}, bytes(300))),
    ("header length beyond the body", *framed({"inputs": [v2_binary(256)]}, bytes(256), 10**6)),
    ("header length not a number", *framed({"inputs": [v2_binary(256)]}, bytes(256), -5)),
    ("deep JSON", b"[" * 100_000 + b"]" * 100_000, {}),
    ("not JSON", b"\x00\xff not json", {}),
    ("a JSON array", b"[1, 2]", {}),
]


@pytest.mark.parametrize(("name", "body", "headers"), BAD_V2, ids=[case[0] for case in BAD_V2])
def test_bad_v2_input_is_a_400_in_the_protocols_form(
    digits_url: str, name: str, body: bytes, headers: dict[str, str]
) -> None:
    answer = httpx.post(f"{digits_url}/v2/models/digits-mlp/infer", content=body, headers=headers, timeout=30)
    assert answer.status_code == 400, (name, answer.text)
    found = answer.json()
    assert isinstance(found["error"], str)
    assert found["error"]
    assert httpx.get(f"{digits_url}/v2/health/live", timeout=10).status_code == 200


def test_the_generic_tensor_service_answers_v2_as_its_own_route(
    bentoml_home: Path, serve: Callable[..., Any], tmp_path: Path
) -> None:
    onnx = onnx_factory.affine(tmp_path / "affine.onnx")
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    subprocess.run([sys.executable, "-m", "models.store", "affine-v2", str(onnx)], env=env, check=True, cwd=ROOT)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    with serve("services.tensor:Tensor", BALLAST_TENSOR_MODEL="affine-v2:latest") as url:
        own = httpx.post(f"{url}/predict", json={"x": x.tolist()}, timeout=10).json()["outputs"]
        tensor = {"name": "x", "datatype": "FP32", "shape": [3, 4], "data": x.ravel().tolist()}
        answer = httpx.post(f"{url}/v2/models/affine-v2/infer", json={"inputs": [tensor]}, timeout=10)
        metadata = httpx.get(f"{url}/v2/models/affine-v2", timeout=10).json()
    assert answer.status_code == 200, answer.text
    [y] = answer.json()["outputs"]
    assert (y["name"], y["datatype"], y["shape"]) == ("y", "FP32", [3, 4])
    assert y["data"] == np.asarray(own["y"]).ravel().tolist()
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]


def test_a_fallback_model_is_addressed_by_name_and_answers_on_its_own(digits_url: str, bentoml_home: Path) -> None:
    import onnxruntime as ort

    metadata = httpx.get(f"{digits_url}/v2/models/digits-mlp-small", timeout=10).json()
    assert (metadata["name"], metadata["inputs"]) == (
        "digits-mlp-small",
        [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
    )
    [version] = metadata["versions"]
    assert httpx.get(f"{digits_url}/v2/models/digits-mlp-small/ready", timeout=10).json() == {
        "name": "digits-mlp-small",
        "ready": True,
    }
    assert httpx.get(f"{digits_url}/v2/models/digits-mlp-small/config", timeout=10).json()["name"] == "digits-mlp-small"
    pixels = IMAGES.reshape(len(IMAGES), 64)
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": list(pixels.shape), "data": pixels.ravel().tolist()}]
    }
    answer = httpx.post(f"{digits_url}/v2/models/digits-mlp-small/versions/{version}/infer", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["model_name"], found["model_version"]) == ("digits-mlp-small", version)
    assert (found["parameters"]["served_by"], found["parameters"]["degraded"]) == ("digits-mlp-small", False)
    session = ort.InferenceSession(str(bentoml_home / "models" / "digits-mlp-small" / version / "model.onnx"))
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": pixels}), strict=True))
    outputs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in found["outputs"]}
    np.testing.assert_array_equal(outputs["label"], expected["label"])
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], atol=1e-6)
    primary = infer_json(digits_url, pixels).json()
    assert primary["model_name"] == "digits-mlp"
    assert primary["parameters"]["served_by"] == "digits-mlp"
    wrong = httpx.post(f"{digits_url}/v2/models/digits-mlp-small/versions/nope/infer", json=body, timeout=10)
    assert wrong.status_code == 404
    assert "digits-mlp-small" in httpx.get(f"{digits_url}/v2/models/nope", timeout=10).json()["error"]

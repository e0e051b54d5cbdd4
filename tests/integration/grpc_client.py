"""Triton's tritonclient.grpc against a Ballast server's gRPC port, run as a script by
test_oip_clients.py (in a process of its own): prints what the client saw, as one JSON line.

    python tests/integration/grpc_client.py 127.0.0.1:PORT
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from sklearn.datasets import load_digits
from tritonclient.utils import InferenceServerException


def main(address: str) -> None:
    images = load_digits().images[:7].astype(np.float32)
    client = triton.InferenceServerClient(url=address)
    found: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("digits-mlp"),
        "unknown_model_ready": client.is_model_ready("resnet"),
        "extensions": client.get_server_metadata(as_json=True)["extensions"],
        "inputs": client.get_model_metadata("digits-mlp", as_json=True)["inputs"],
        "config": client.get_model_config("digits-mlp", as_json=True)["config"],
    }
    tensor = triton.InferInput("input", [7, 64], "FP32")
    tensor.set_data_from_numpy(images.reshape(7, 64))
    result = client.infer("digits-mlp", [tensor], request_id="over-grpc", client_timeout=10)
    response = result.get_response()
    found["id"] = response.id
    found["served_by"] = response.parameters["served_by"].string_param
    found["label"] = result.as_numpy("label").tolist()
    found["probabilities"] = result.as_numpy("probabilities").tolist()
    flat = triton.InferInput("input", [1, 8, 8], "FP32")
    flat.set_data_from_numpy(images[:1])
    for name, call in (
        ("bad_shape", lambda: client.infer("digits-mlp", [flat])),
        ("unknown_model", lambda: client.get_model_metadata("resnet")),
    ):
        try:
            call()
            found[name] = None
        except InferenceServerException as exc:
            found[name] = [exc.status(), exc.message()]
    print(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1])

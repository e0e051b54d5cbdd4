"""KServe's own clients, ``InferenceRESTClient`` (protocol v2) and ``InferenceGRPCClient``, against a
Ballast server, run as a script by test_oip_clients.py with the interpreter of a virtual
environment of their own (``make kserve-client``: KServe's requirements are not Ballast's):
prints what the clients saw, as one JSON line.

    .venv-kserve/bin/python tests/integration/kserve_client.py http://127.0.0.1:PORT 127.0.0.1:GRPC_PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


def images() -> np.ndarray:
    """Seven digits as the model takes them, the same in every process: the server's own route
    answers them in the test."""
    return (np.arange(7 * 64, dtype=np.float32).reshape(7, 64) % 17).astype(np.float32)


def request(model: str, request_id: str, binary: bool = False) -> InferRequest:
    tensor = InferInput("input", [7, 64], "FP32")
    tensor.set_data_from_numpy(images(), binary_data=binary)
    return InferRequest(model_name=model, infer_inputs=[tensor], request_id=request_id)


def outputs(response: Any) -> dict[str, Any]:
    return {o.name: o.as_numpy().tolist() for o in response.outputs}


async def over_rest(url: str) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
    found: dict[str, Any] = {
        "live": await client.is_server_live(url),
        "ready": await client.is_server_ready(url),
        "model_ready": await client.is_model_ready(url, "digits-mlp"),
        "unknown_model_ready": await client.is_model_ready(url, "resnet"),
    }
    for binary in (False, True):
        answer = await client.infer(url, request("digits-mlp", f"kserve-rest-{binary}", binary), "digits-mlp")
        found[f"binary={binary}"] = {"id": answer.id, "model": answer.model_name, **outputs(answer)}
    small = await client.infer(url, request("digits-mlp-small", "kserve-small"), "digits-mlp-small")
    found["fallback_by_name"] = {"model": small.model_name, "served_by": small.parameters.get("served_by")}
    bad = InferRequest(model_name="digits-mlp", infer_inputs=[InferInput("input", [1, 8, 8], "FP32")])
    bad.inputs[0].set_data_from_numpy(images()[:1].reshape(1, 8, 8))
    try:
        await client.infer(url, bad, "digits-mlp")
        found["bad_shape"] = None
    except httpx.HTTPStatusError as exc:
        found["bad_shape"] = [exc.response.status_code, exc.response.json()["error"]]
    await client.close()
    return found


async def over_grpc(address: str) -> dict[str, Any]:
    client = InferenceGRPCClient(address, timeout=30, retries=2)  # its least (retried: UNAVAILABLE only)
    found: dict[str, Any] = {
        "live": await client.is_server_live(),
        "ready": await client.is_server_ready(),
        "model_ready": await client.is_model_ready("digits-mlp"),
    }
    answer = await client.infer(request("digits-mlp", "kserve-grpc"))
    found["answer"] = {"id": answer.id, "model": answer.model_name, **outputs(answer)}
    try:
        await client.infer(request("resnet", "kserve-unknown"))
        found["unknown_model"] = None
    except grpc.RpcError as exc:
        found["unknown_model"] = [str(exc.code()), exc.details()]
    await client.close()
    return found


async def main(url: str, address: str) -> None:
    print(json.dumps({"rest": await over_rest(url), "grpc": await over_grpc(address)}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

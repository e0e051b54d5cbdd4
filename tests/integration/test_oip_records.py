"""A service that takes records (fraud), over the Open Inference Protocol: one input per field of
its record, a column of shape [N, 1]; Triton's clients (HTTP, JSON and binary BYTES; gRPC) get the
probabilities the service's own batch route gives; each broken rule is a 400 naming the input and
the row, or the rule of the field, as the records route checks it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from models.fraud import Transaction
from tests.integration.conftest import free_port

EXAMPLE: dict[str, Any] = Transaction.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index,assignment]
TRANSACTIONS = [
    EXAMPLE,
    {**EXAMPLE, "amount": 9_000.0, "hour": 3, "country_mismatch": True, "device_change": True, "distance_km": 4_000.0},
    {
        **EXAMPLE,
        "currency": "USD",
        "merchant_category": "travel",
        "card_age_days": 3,
        "txn_count_1h": 9,
        "txn_count_24h": 20,
    },
]
FIELDS = [name for name in Transaction.model_fields if name in EXAMPLE]
DATATYPES = {bool: "BOOL", int: "INT64", float: "FP64", str: "BYTES"}


def columns(transactions: list[dict[str, Any]]) -> list[tuple[str, str, np.ndarray]]:
    """Each field's column: (name, datatype, values of shape [N, 1])."""
    found = []
    for name in FIELDS:
        values = [t[name] for t in transactions]
        datatype = DATATYPES[type(EXAMPLE[name])]
        dtype = {"BOOL": np.bool_, "INT64": np.int64, "FP64": np.float64, "BYTES": np.object_}[datatype]
        array: np.ndarray = np.array([v.encode() if isinstance(v, str) else v for v in values], dtype=dtype)
        found.append((name, datatype, array.reshape(-1, 1)))
    return found


def own(fraud_url: str) -> list[float]:
    answer = httpx.post(f"{fraud_url}/score_batch", json={"transactions": TRANSACTIONS}, timeout=10)
    return [r["fraud_probability"] for r in answer.json()["results"]]


def test_the_metadata_lists_the_records_fields_as_columns(fraud_url: str) -> None:
    metadata = httpx.get(f"{fraud_url}/v2/models/fraud-gbt", timeout=10).json()
    inputs = {t["name"]: t for t in metadata["inputs"]}
    assert list(inputs) == list(Transaction.model_fields)
    assert inputs["amount"] == {"name": "amount", "datatype": "FP64", "shape": [-1, 1]}
    assert inputs["currency"]["datatype"] == "BYTES"
    assert inputs["card_number"]["parameters"] == {"optional": True}  # context: may be left out
    config = httpx.get(f"{fraud_url}/v2/models/fraud-gbt/config", timeout=10).json()
    assert {"name": "hour", "data_type": "TYPE_INT64", "dims": [1]} in config["input"]
    assert {"name": "note", "data_type": "TYPE_STRING", "dims": [1], "optional": True} in config["input"]


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_scores_records_as_the_services_own_route(fraud_url: str, binary: bool) -> None:
    client = triton.InferenceServerClient(url=fraud_url.removeprefix("http://"))
    inputs = []
    for name, datatype, values in columns(TRANSACTIONS):
        tensor = triton.InferInput(name, list(values.shape), datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    result = client.infer("fraud-gbt", inputs, outputs=[triton.InferRequestedOutput("probabilities", binary)])
    np.testing.assert_allclose(result.as_numpy("probabilities")[:, 1], own(fraud_url), atol=1e-6)
    assert result.get_response()["parameters"]["served_by"] == "fraud-gbt"


def infer(fraud_url: str, tensors: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{fraud_url}/v2/models/fraud-gbt/infer", json={"inputs": tensors}, timeout=10)


def as_json(transactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": name, "datatype": datatype, "shape": [len(transactions), 1], "data": [t[name] for t in transactions]}
        for name, datatype, _ in columns(transactions)
    ]


def test_each_broken_rule_is_a_400_naming_the_input_and_the_row(fraud_url: str) -> None:
    bad = as_json([EXAMPLE, {**EXAMPLE, "amount": -5.0, "currency": "XXX"}])
    answer = infer(fraud_url, bad)
    assert answer.status_code == 400
    paths = {f["path"]: f["rule"] for f in answer.json()["fields"]}
    assert paths == {"inputs[0].data[1]": "range", "inputs[1].data[1]": "category"}
    missing = infer(fraud_url, as_json([EXAMPLE])[1:])
    assert (missing.status_code, missing.json()["fields"][0]["path"]) == (400, "inputs")
    assert "'amount' is missing" in missing.json()["error"]
    flat = [{**t, "shape": [1]} for t in as_json([EXAMPLE])]  # a column is [N, 1]: never reshaped
    assert infer(fraud_url, flat).json()["fields"][0]["path"] == "inputs[0].shape"
    wrong = [{**t, "datatype": "FP32"} if t["name"] == "amount" else t for t in as_json([EXAMPLE])]
    assert "the field takes FP64" in infer(fraud_url, wrong).json()["error"]
    numbers = [{**t, "data": [1]} if t["name"] == "currency" else t for t in as_json([EXAMPLE])]
    assert "BYTES takes strings" in infer(fraud_url, numbers).json()["error"]
    card = {"name": "card_number", "datatype": "BYTES", "shape": [1, 1], "data": ["4111111111111111"]}
    assert infer(fraud_url, [*as_json([EXAMPLE]), card]).status_code == 200  # an optional field, given
    letters = {**card, "data": ["not a card number"]}
    assert infer(fraud_url, [*as_json([EXAMPLE]), letters]).json()["fields"][0]["path"] == "inputs[10].data[0]"


def binary_request(tensors: list[tuple[str, str, bytes]], rows: int = 1) -> tuple[bytes, str]:
    header = json.dumps(
        {
            "inputs": [
                {"name": n, "datatype": d, "shape": [rows, 1], "parameters": {"binary_data_size": len(raw)}}
                for n, d, raw in tensors
            ]
        }
    ).encode()
    return header + b"".join(raw for _, _, raw in tensors), str(len(header))


def test_binary_bytes_elements_are_checked_against_their_lengths(fraud_url: str) -> None:
    good = [(n, d, v.tobytes() if d != "BYTES" else b"") for n, d, v in columns([EXAMPLE])]

    def send(currency: bytes) -> httpx.Response:
        tensors = [(n, d, currency if n == "currency" else raw) for n, d, raw in good]
        tensors = [(n, d, _prefixed(EXAMPLE[n]) if n == "merchant_category" else raw) for n, d, raw in tensors]
        body, length = binary_request(tensors)
        return httpx.post(
            f"{fraud_url}/v2/models/fraud-gbt/infer",
            content=body,
            headers={"Inference-Header-Content-Length": length},
            timeout=10,
        )

    assert send(_prefixed("EUR")).status_code == 200
    beyond = send(b"\x09\x00\x00\x00EUR")  # says 9 bytes, holds 3
    assert beyond.status_code == 400
    assert "runs beyond the binary data" in beyond.json()["error"]
    not_text = send(b"\x02\x00\x00\x00\xff\xfe")
    assert (not_text.status_code, "UTF-8" in not_text.json()["error"]) == (400, True)
    assert "after the 1 elements" in send(_prefixed("EUR") + b"x").json()["error"]


def _prefixed(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(4, "little") + raw


GRPC_CLIENT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tritonclient.grpc as triton
    address, columns = sys.argv[1], json.loads(sys.argv[2])
    client = triton.InferenceServerClient(url=address)
    inputs = []
    for name, datatype, values in columns:
        array = np.array([v.encode() if isinstance(v, str) else v for v in values],
                         dtype={"BOOL": np.bool_, "INT64": np.int64, "FP64": np.float64, "BYTES": np.object_}[datatype])
        tensor = triton.InferInput(name, [len(values), 1], datatype)
        tensor.set_data_from_numpy(array.reshape(-1, 1))
        inputs.append(tensor)
    result = client.infer("fraud-gbt", inputs)
    inputs = [i for i in inputs if i.name() != "amount"]
    try:
        client.infer("fraud-gbt", inputs)
        missing = None
    except triton.InferenceServerException as exc:
        missing = [str(exc.status()), exc.message()]
    print(json.dumps({"probabilities": result.as_numpy("probabilities")[:, 1].tolist(), "missing": missing}))
    """
)


@pytest.fixture(scope="module")
def grpc_fraud(serve: Callable[..., Any]) -> Iterator[tuple[str, str]]:
    port = free_port()
    with serve("services.fraud:Fraud", BALLAST_GRPC_PORT=str(port)) as url:
        yield str(url), f"127.0.0.1:{port}"


def test_tritonclient_grpc_scores_records_as_the_services_own_route(grpc_fraud: tuple[str, str]) -> None:
    url, address = grpc_fraud
    given = [(name, datatype, values.ravel().tolist()) for name, datatype, values in columns(TRANSACTIONS)]
    given = [(n, d, [v.decode() if isinstance(v, bytes) else v for v in values]) for n, d, values in given]
    done = subprocess.run(
        [sys.executable, "-c", GRPC_CLIENT, address, json.dumps(given)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(found["probabilities"], own(url), atol=1e-6)
    assert found["missing"][0] == "StatusCode.INVALID_ARGUMENT"
    assert "'amount' is missing" in found["missing"][1]


def test_a_record_given_twice_or_unknown_is_refused(fraud_url: str) -> None:
    given = as_json([EXAMPLE])
    twice = infer(fraud_url, [*given, given[0]])
    assert "given twice" in twice.json()["error"]
    unknown = infer(fraud_url, [*given, {"name": "iban", "datatype": "BYTES", "shape": [1, 1], "data": ["x"]}])
    assert "the record has no field 'iban'" in unknown.json()["error"]
    client = triton.InferenceServerClient(url=fraud_url.removeprefix("http://"))
    tensor = triton.InferInput("iban", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"x"]], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="the record has no field"):
        client.infer("fraud-gbt", [tensor])

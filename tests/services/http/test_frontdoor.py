"""The front door over ASGI, in process: routing, error mapping, request ids, limits, steps' order."""

from __future__ import annotations

import io
import re
import time
from collections.abc import MutableMapping
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from runtime import FieldError, Layer, Overloaded, ShedReason, ValidationFailed
from services.http.admission import Admission
from services.http.auth import Credentials
from services.http.drain import Drain
from services.http.frontdoor import FrontDoor
from services.http.routes import NpyResponse, RequestInfo, Route


async def echo(payload: Any, info: RequestInfo) -> dict[str, Any]:
    kind = payload.get("raise") if isinstance(payload, dict) else None
    if kind == "validation":
        raise ValidationFailed([FieldError("a", "range", "too big", 9)], Layer.CONTENT)
    if kind == "overload":
        raise Overloaded(ShedReason.QUEUE_FULL, retry_after_s=2.4)
    if kind == "bug":
        raise KeyError("secret internals")
    return {"payload": payload, "request_id": info.request_id, "timeout_s": info.timeout_s}


ECHO = Route("POST", "/echo", echo)


def door(routes: list[Route], max_body_bytes: int = 1024, **steps: Any) -> FrontDoor:
    """A front door over ``routes`` with the steps a test does not set left open."""
    return FrontDoor(
        routes,
        bentoml_app,
        max_body_bytes=max_body_bytes,
        read_timeout_s=10.0,
        credentials=steps.pop("credentials", Credentials()),
        drain=steps.pop("drain", Drain(0.0)),
        admission=steps.pop("admission", Admission(0.0)),
        **steps,
    )


async def bentoml_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b"bentoml"})


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = door([ECHO], documents={"/openapi.json": lambda: {"openapi": "3.1.0"}})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_two_routes_on_one_path_are_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="two routes share a path"):
        door([ECHO, Route("POST", "/echo", echo, admin=True)])


async def test_a_route_answers_json_with_the_callers_request_id(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/echo", json={"x": 1}, headers={"X-Request-ID": "abc-1", "X-Request-Timeout-Ms": "250"}
    )
    assert response.status_code == 200
    assert response.json() == {"payload": {"x": 1}, "request_id": "abc-1", "timeout_s": 0.25}
    assert response.headers["x-request-id"] == "abc-1"


async def test_a_missing_or_malformed_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={}, headers={"X-Request-ID": "bad id with spaces"})
    generated = response.json()["request_id"]
    assert re.fullmatch(r"[0-9a-f]{28}", generated)
    assert abs(int(generated[:12], 16) / 1000 - time.time()) < 60  # time-ordered: milliseconds first
    assert generated == response.headers["x-request-id"]


async def test_other_paths_go_to_bentoml(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert (response.status_code, response.text) == (299, "bentoml")
    assert (await client.get("/openapi.json")).json() == {"openapi": "3.1.0"}


@pytest.mark.parametrize(
    ("kwargs", "status", "kind"),
    [
        ({"content": b"{oops", "headers": {"Content-Type": "application/json"}}, 400, "bad_request"),
        ({"content": b"{}", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        (
            {"content": b"[" + b"1," * 600 + b"1]", "headers": {"Content-Type": "application/json"}},
            413,
            "payload_too_large",
        ),
        ({"json": {}, "headers": {"X-Request-Timeout-Ms": "soon"}}, 400, "bad_request"),
        ({"json": {}, "headers": {"X-Request-Timeout-Ms": "-5"}}, 400, "bad_request"),
        ({"json": {"raise": "validation"}}, 422, "validation_error"),
    ],
)
async def test_client_errors_are_json_4xx(
    client: httpx.AsyncClient, kwargs: dict[str, Any], status: int, kind: str
) -> None:
    response = await client.post("/echo", **kwargs)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == kind
    assert error["request_id"] == response.headers["x-request-id"]


async def test_overload_is_503_with_retry_after_rounded(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={"raise": "overload"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"


async def test_a_bug_is_500_with_only_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={"raise": "bug"})
    assert response.status_code == 500
    assert "secret" not in response.text
    assert response.json() == {
        "error": {"type": "internal_error", "message": "internal error", "request_id": response.headers["x-request-id"]}
    }


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/echo")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def doubled(payload: Any, info: RequestInfo) -> Any:
    if info.wants_npy:
        return NpyResponse(np.asarray(payload) * 2, {"x-served-by": "m"})
    return {"sum": float(np.asarray(payload).sum())}


@pytest.fixture
def tensor_client() -> httpx.AsyncClient:
    app = door([Route("POST", "/t", doubled, npy=True)], max_body_bytes=1 << 16)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


async def test_binary_tensors_in_and_out(tensor_client: httpx.AsyncClient) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    response = await tensor_client.post(
        "/t", content=npy(x), headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-npy"
    assert response.headers["x-served-by"] == "m"
    np.testing.assert_array_equal(np.load(io.BytesIO(response.content), allow_pickle=False), x * 2)
    as_json = await tensor_client.post("/t", content=npy(x), headers={"Content-Type": "application/x-npy"})
    assert as_json.json() == {"sum": 15.0}


async def test_pickled_or_broken_npy_bodies_are_refused(tensor_client: httpx.AsyncClient) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for body in (buffer.getvalue(), b"\x93NUMPY garbage"):
        response = await tensor_client.post("/t", content=body, headers={"Content-Type": "application/x-npy"})
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "bad_request"


async def test_npy_is_only_for_routes_that_offer_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", content=npy(np.zeros(2)), headers={"Content-Type": "application/x-npy"})
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        ("application/jsonp", 415),
        ("application/json-seq", 415),
        ("text/json", 415),
    ],
)
async def test_the_json_media_type_is_matched_exactly_ignoring_case_and_parameters(
    client: httpx.AsyncClient, content_type: str, status: int
) -> None:
    response = await client.post("/echo", content=b"{}", headers={"Content-Type": content_type})
    assert response.status_code == status


@pytest.mark.parametrize(("ms", "seconds"), [("250", 0.25), ("1e-320", 1e-323), ("1e-321", 5e-324), ("5e-324", 5e-324)])
async def test_any_positive_timeout_is_a_deadline_even_below_float_resolution(
    client: httpx.AsyncClient, ms: str, seconds: float
) -> None:
    response = await client.post("/echo", json={}, headers={"X-Request-Timeout-Ms": ms})
    assert response.status_code == 200
    assert response.json()["timeout_s"] == seconds


async def test_a_declared_length_over_the_limit_is_413_without_reading_the_body() -> None:
    app = door([ECHO])
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"content-length", b"1025")]
    await app({"type": "http", "method": "POST", "path": "/echo", "headers": headers}, receive, send)
    assert sent[0]["status"] == 413
    assert orjson.loads(sent[1]["body"])["error"]["type"] == "payload_too_large"


async def test_while_draining_new_requests_get_503_and_liveness_still_answers() -> None:
    from prometheus_client import CollectorRegistry

    from runtime import RuntimeMetrics

    drain = Drain(60.0)
    metrics = RuntimeMetrics(CollectorRegistry())
    app = door(
        [ECHO], drain=drain, count_refusal=lambda route, reason: metrics.series(metrics.refused, route, reason).inc()
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.post("/echo", json={})).status_code == 200
        drain.draining = True
        for path in ("/echo", "/readyz", "/anything"):
            response = await client.post(path, json={})
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.headers["connection"] == "close"
            assert response.json()["error"]["type"] == "shutting_down"
            assert response.json()["error"]["message"] == "the server is shutting down; retry"
        assert (await client.get("/livez")).status_code == 299  # BentoML's app still answers it
    assert drain.in_flight == 0
    metrics.buffer.flush()  # what a scrape of /metrics does first
    refused = {
        (s.labels["route"], s.labels["reason"]): s.value
        for s in next(iter(metrics.refused.collect())).samples
        if s.name.endswith("_total")
    }
    assert refused == {("/echo", "shutting_down"): 1.0, ("other", "shutting_down"): 2.0}  # none lost silently


async def test_credentials_are_checked_before_the_body_is_read() -> None:
    from pydantic import SecretStr

    credentials = Credentials.from_secrets(None, SecretStr("k" * 16))
    app = door([ECHO], credentials=credentials)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.post("/echo", content=b"x" * 4096, headers={"content-type": "application/json"})
        assert response.status_code == 401  # not 413: the body was never read
        assert response.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
        response = await client.post("/echo", json={"a": 1}, headers={"x-api-key": "k" * 16})
        assert response.status_code == 200

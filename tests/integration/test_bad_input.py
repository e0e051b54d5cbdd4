"""A corpus of bad requests against the real servers (fraud /score and /score_batch, digits
/classify): every one gets its exact 4xx status and the JSON error body, never a 5xx, and the
server stays alive.

The statuses: 400 when the body cannot be read as the expected JSON document (malformed,
undecodable, not valid UTF-8, nested past the decoder's depth limit, the wrong top-level type),
413 when it is too large, 415 when it is not ``application/json``, 422 when it is JSON of the
right shape that breaks a rule -- with every broken rule named by path.
"""

from __future__ import annotations

import pickle
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from runtime import Settings
from services.fraud import Fraud
from services.settings import ServerSettings

SERVER, RUNTIME = ServerSettings(), Settings()  # what the servers under test read from the same environment
LIMIT = SERVER.max_body_bytes
MAX_ROWS = RUNTIME.max_request_rows

TXN: dict[str, Any] = Fraud.inner.declaration.request_example()  # the fraud OpenAPI example: a valid transaction
IMAGE = [[float((3 * row + col) % 17) for col in range(8)] for row in range(8)]
SERVICE = {"/score": "fraud", "/score_batch": "fraud", "/classify": "digits"}
VALID = {"/score": TXN, "/score_batch": {"transactions": [TXN, TXN]}, "/classify": {"images": [IMAGE]}}
RAW = "__raw__"
"""A placeholder string that :func:`dump` replaces with raw bytes (tokens JSON does not have)."""


def dump(document: Any, raw: bytes = b"") -> bytes:
    return orjson.dumps(document).replace(b'"' + RAW.encode() + b'"', raw)


def txn(drop: Iterable[str] = (), **changes: Any) -> dict[str, Any]:
    return {**{k: v for k, v in TXN.items() if k not in drop}, **changes}


def image(changes: dict[tuple[int, int], Any]) -> list[list[Any]]:
    pixels: list[list[Any]] = [list(row) for row in IMAGE]
    for (row, col), value in changes.items():
        pixels[row][col] = value
    return pixels


def nested(depth: int, leaf: str = "1") -> bytes:
    return ("[" * depth + leaf + "]" * depth).encode()


@dataclass(frozen=True)
class Bad:
    id: str
    path: str
    body: bytes
    status: int
    type: str
    fields: frozenset[tuple[str, str]] = frozenset()
    """For 422: exactly the (path, rule) pairs the answer must list."""
    content_type: str | None = "application/json"
    values: tuple[tuple[str, Any], ...] = ()
    """For 422: (path, value) pairs the answer must echo."""


def bad(
    id: str,
    path: str,
    body: bytes,
    status: int,
    *fields: tuple[str, str],
    content_type: str | None = "application/json",
    values: tuple[tuple[str, Any], ...] = (),
) -> Bad:
    kind = {400: "bad_request", 413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error"}
    return Bad(id, path, body, status, kind[status], frozenset(fields), content_type, values)


REQUIRED_TXN = {(name, "required") for name in TXN}

FRAUD: list[Bad] = [
    # --- not readable as JSON: 400 ---
    bad("malformed", "/score", b'{"amount": 249.9,', 400),
    bad("empty-body", "/score", b"", 400),
    bad("trailing-garbage", "/score", dump(TXN) + b" x", 400),
    bad("single-quotes", "/score", dump(TXN).replace(b'"', b"'"), 400),
    bad("pickle-sent-as-json", "/score", pickle.dumps(TXN), 400),
    bad("invalid-utf8", "/score", dump(txn(currency=RAW), b'"\xff\xfe\xfd"'), 400),
    bad("lone-surrogate", "/score", dump(txn(currency=RAW), b'"\\ud800"'), 400),
    bad("byte-order-mark", "/score", b"\xef\xbb\xbf" + dump(TXN), 400),
    bad("nan-token", "/score", dump(txn(amount=RAW), b"NaN"), 400),
    bad("infinity-token", "/score", dump(txn(amount=RAW), b"Infinity"), 400),
    bad("minus-infinity-token", "/score", dump(txn(amount=RAW), b"-Infinity"), 400),
    bad("number-beyond-double", "/score", dump(txn(amount=RAW), b"1e400"), 400),
    bad("negative-number-beyond-double", "/score", dump(txn(distance_km=RAW), b"-1e400"), 400),
    bad("nested-100000-arrays", "/score", nested(100_000), 400),
    bad("nested-100000-objects", "/score", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400),
    bad("nested-100000-in-a-field", "/score", dump(txn(amount=RAW), nested(100_000)), 400),
    bad("top-level-array", "/score", dump([TXN]), 400),
    bad("top-level-string", "/score", b'"EUR"', 400),
    bad("top-level-null", "/score", b"null", 400),
    # --- JSON that breaks rules: 422 naming every field ---
    bad(
        "wrong-types",
        "/score",
        dump(txn(amount="249.9", currency=978, hour=14.5, country_mismatch="false", card_age_days=None)),
        422,
        ("amount", "type"),
        ("currency", "type"),
        ("hour", "type"),
        ("country_mismatch", "type"),
        ("card_age_days", "type"),
    ),
    bad("true-for-numbers", "/score", dump(txn(amount=True, hour=False)), 422, ("amount", "type"), ("hour", "type")),
    bad(
        "containers-for-numbers",
        "/score",
        dump(txn(amount=[1], distance_km={})),
        422,
        ("amount", "type"),
        ("distance_km", "type"),
    ),
    bad("nested-500-in-a-field", "/score", dump(txn(amount=RAW), nested(500)), 422, ("amount", "type")),
    bad("missing-everything", "/score", b"{}", 422, *REQUIRED_TXN),
    bad("missing-one", "/score", dump(txn(drop=["amount"])), 422, ("amount", "required")),
    bad("unknown-field", "/score", dump(txn(surprise=1)), 422, ("surprise", "unknown_field")),
    bad("unicode-unknown-field", "/score", dump({**TXN, "日本": 1}), 422, ("日本", "unknown_field")),
    bad("float32-overflow", "/score", dump(txn(amount=1e39)), 422, ("amount", "finite")),
    bad(
        "out-of-range",
        "/score",
        dump(txn(amount=-5, hour=24, card_age_days=-1, distance_km=30_000.0, txn_count_24h=10**12)),
        422,
        ("amount", "range"),
        ("hour", "range"),
        ("card_age_days", "range"),
        ("distance_km", "range"),
        ("txn_count_24h", "range"),
    ),
    bad("amount-zero", "/score", dump(txn(amount=0)), 422, ("amount", "range")),
    bad("huge-negative-amount", "/score", dump(txn(amount=-1e30)), 422, ("amount", "range")),
    bad("float32-overflow-negative", "/score", dump(txn(distance_km=-1e300)), 422, ("distance_km", "finite")),
    bad(
        "unknown-categories",
        "/score",
        dump(txn(currency="XXX", merchant_category="")),
        422,
        ("currency", "category"),
        ("merchant_category", "category"),
    ),
    bad("category-wrong-case", "/score", dump(txn(currency="eur")), 422, ("currency", "category")),
    bad(
        "unicode-category",
        "/score",
        dump(txn(currency="日本", merchant_category="💳🦄")),
        422,
        ("currency", "category"),
        ("merchant_category", "category"),
        values=(("currency", "日本"), ("merchant_category", "💳🦄")),
    ),
    bad(
        "business-rule",
        "/score",
        dump(txn(txn_count_1h=9, txn_count_24h=2)),
        422,
        ("txn_count_1h", "burst_exceeds_day"),
    ),
    # --- batches ---
    bad("batch-malformed", "/score_batch", b'{"transactions": [', 400),
    bad("batch-top-level-array", "/score_batch", dump([TXN]), 400),
    bad("batch-nan-token", "/score_batch", dump({"transactions": [txn(amount=RAW)]}, b"NaN"), 400),
    bad("batch-missing", "/score_batch", b"{}", 422, ("transactions", "required")),
    bad(
        "batch-unknown-field",
        "/score_batch",
        dump({"transactions": [TXN], "rows": 1}),
        422,
        ("rows", "unknown_field"),
    ),
    bad("batch-not-a-list", "/score_batch", dump({"transactions": TXN}), 422, ("transactions", "type")),
    bad("batch-empty", "/score_batch", dump({"transactions": []}), 422, ("transactions", "max_rows")),
    bad(
        "batch-oversize",
        "/score_batch",
        dump({"transactions": [TXN] * (MAX_ROWS + 1)}),
        422,
        ("transactions", "max_rows"),
    ),
    bad(
        "batch-ragged-items",
        "/score_batch",
        dump({"transactions": [TXN, 1, [TXN], None]}),
        422,
        ("transactions[1]", "type"),
        ("transactions[2]", "type"),
        ("transactions[3]", "type"),
    ),
    bad(
        "batch-errors-in-several-rows",
        "/score_batch",
        dump({"transactions": [txn(amount=-1), TXN, txn(currency="日本", drop=["hour"])]}),
        422,
        ("transactions[0].amount", "range"),
        ("transactions[2].currency", "category"),
        ("transactions[2].hour", "required"),
    ),
]

DIGITS: list[Bad] = [
    bad("malformed", "/classify", b'{"images": [[[1, 2', 400),
    bad("empty-body", "/classify", b"", 400),
    bad("invalid-utf8", "/classify", b'{"images": "\xc3\x28"}', 400),
    bad("nan-token", "/classify", dump({"images": [image({(0, 0): RAW})]}, b"NaN"), 400),
    bad("infinity-token", "/classify", dump({"images": [image({(0, 0): RAW})]}, b"Infinity"), 400),
    bad("minus-infinity-token", "/classify", dump({"images": [image({(0, 0): RAW})]}, b"-Infinity"), 400),
    bad("number-beyond-double", "/classify", dump({"images": [image({(0, 0): RAW})]}, b"1e400"), 400),
    bad("nested-100000-arrays", "/classify", nested(100_000), 400),
    bad("nested-100000-objects", "/classify", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400),
    bad("nested-100000-images", "/classify", dump({"images": RAW}, nested(100_000)), 400),
    bad("top-level-array", "/classify", dump([IMAGE]), 400),
    bad("top-level-number", "/classify", b"7", 400),
    bad("missing-images", "/classify", b"{}", 422, ("images", "required")),
    bad("unknown-field", "/classify", dump({"images": [IMAGE], "labels": [0]}), 422, ("labels", "unknown_field")),
    bad(
        "unicode-field-names",
        "/classify",
        dump({"画像": [IMAGE], "🖼": 1}),
        422,
        ("画像", "unknown_field"),
        ("🖼", "unknown_field"),
        ("images", "required"),
    ),
    bad("images-a-string", "/classify", dump({"images": "0123"}), 422, ("images", "type")),
    bad("images-null", "/classify", dump({"images": None}), 422, ("images", "type")),
    bad("images-an-object", "/classify", dump({"images": {"0": IMAGE}}), 422, ("images", "type")),
    bad("true-in-float-list", "/classify", dump({"images": [image({(3, 4): True})]}), 422, ("images", "type")),
    bad("all-booleans", "/classify", dump({"images": [[[True] * 8] * 8]}), 422, ("images", "type")),
    bad("string-in-float-list", "/classify", dump({"images": [image({(0, 0): "7"})]}), 422, ("images", "type")),
    bad("unicode-in-float-list", "/classify", dump({"images": [image({(0, 0): "日本"})]}), 422, ("images", "type")),
    bad("null-in-float-list", "/classify", dump({"images": [image({(0, 0): None})]}), 422, ("images", "type")),
    bad("nested-500-images", "/classify", dump({"images": RAW}, nested(500)), 422, ("images", "type")),
    bad(
        "float32-overflow",
        "/classify",
        dump({"images": [image({(1, 2): 1e39})]}),
        422,
        ("images[0][1][2]", "finite"),
    ),
    bad(
        "out-of-range",
        "/classify",
        dump({"images": [IMAGE, image({(0, 0): 17, (7, 7): -1})]}),
        422,
        ("images[1][0][0]", "range"),
        ("images[1][7][7]", "range"),
    ),
    bad("ragged-rows", "/classify", dump({"images": [[*IMAGE[:7], IMAGE[7][:7]]]}), 422, ("images", "type")),
    bad("ragged-images", "/classify", dump({"images": [IMAGE, IMAGE[:7]]}), 422, ("images", "type")),
    bad(
        "flat-64", "/classify", dump({"images": [[pixel for row in IMAGE for pixel in row]]}), 422, ("images", "shape")
    ),
    bad("no-batch-dimension", "/classify", dump({"images": IMAGE}), 422, ("images", "shape")),
    bad("8x9", "/classify", dump({"images": [[[*row, 0.0] for row in IMAGE]]}), 422, ("images", "shape")),
    bad("9x8", "/classify", dump({"images": [[*IMAGE, IMAGE[0]]]}), 422, ("images", "shape")),
    bad("extra-dimension", "/classify", dump({"images": [[IMAGE]]}), 422, ("images", "shape")),
    bad("no-images", "/classify", dump({"images": []}), 422, ("images", "shape")),
    bad("oversize-batch", "/classify", dump({"images": [IMAGE] * (MAX_ROWS + 1)}), 422, ("images", "max_rows")),
]

CONTENT_TYPES = [
    None,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/python-pickle",
    "application/x-pickle",
    "application/octet-stream",
    "application/x-npy",
    "application/jsonp",
    "application/json-seq",
    "application/merge-patch+json",
    "text/json",
]
MEDIA: list[Bad] = [
    bad(f"{content_type or 'no'}-content-type", path, body, 415, content_type=content_type)
    for path in VALID
    for content_type in CONTENT_TYPES
    for body in ([pickle.dumps(VALID[path])] if content_type and "pickle" in content_type else [dump(VALID[path])])
]

CASES = FRAUD + DIGITS + MEDIA


@pytest.fixture
def service_url(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """The base URL of the server behind a route path; starts only the servers a test uses."""

    def get(path: str) -> str:
        return str(request.getfixturevalue(f"{SERVICE[path]}_url"))

    return get


def assert_error(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    """The exact status, a JSON body of the project's error shape, the request id echoed."""
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"], body
    error: dict[str, Any] = body["error"]
    assert error["type"] == type_, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    if status == 422:
        assert error["fields"], error
        for item in error["fields"]:
            assert set(item) == {"path", "rule", "message", "value"}, item
            assert isinstance(item["message"], str)
            assert item["message"]
    else:
        assert "fields" not in error
    return error


def assert_alive(url: str) -> None:
    assert httpx.get(f"{url}/livez", timeout=5).status_code == 200


def post(url: str, path: str, body: bytes | Iterator[bytes], content_type: str | None) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return httpx.post(f"{url}{path}", content=body, headers=headers, timeout=30)


def test_the_valid_bodies_are_accepted(service_url: Callable[[str], str]) -> None:
    """The corpus's starting points are valid, so each case fails only for what it changed."""
    for path, body in VALID.items():
        response = post(service_url(path), path, dump(body), "application/json")
        assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize("case", CASES, ids=[f"{SERVICE[c.path]}{c.path}:{c.id}" for c in CASES])
def test_bad_input_gets_its_exact_4xx(case: Bad, service_url: Callable[[str], str]) -> None:
    url = service_url(case.path)
    response = post(url, case.path, case.body, case.content_type)
    error = assert_error(response, case.status, case.type)
    if case.status == 422:
        assert {(f["path"], f["rule"]) for f in error["fields"]} == case.fields
        echoed = {f["path"]: f["value"] for f in error["fields"]}
        for path, value in case.values:
            assert echoed[path] == value
            assert path in error["message"]
    assert_alive(url)


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/JSON;charset=UTF-8"]
)
@pytest.mark.parametrize("path", list(VALID))
def test_json_media_type_is_case_insensitive_and_takes_parameters(
    service_url: Callable[[str], str], path: str, content_type: str
) -> None:
    response = post(service_url(path), path, dump(VALID[path]), content_type)
    assert response.status_code == 200, response.text


def test_thousands_of_errors_are_capped_in_one_422(service_url: Callable[[str], str]) -> None:
    body = dump({**TXN, **{f"extra_{i}": i for i in range(20_000)}})
    assert len(body) < LIMIT
    response = post(service_url("/score"), "/score", body, "application/json")
    error = assert_error(response, 422, "validation_error")
    assert len(error["fields"]) == 100
    assert {f["rule"] for f in error["fields"]} == {"unknown_field"}
    assert_alive(service_url("/score"))


# --- size limits ---------------------------------------------------------------------------


def padded(path: str, size: int) -> bytes:
    """A valid body of exactly ``size`` bytes (JSON allows trailing whitespace)."""
    body = dump(VALID[path])
    return body + b" " * (size - len(body))


@pytest.mark.parametrize("path", list(VALID))
def test_a_body_at_the_limit_is_read_and_one_byte_more_is_413(service_url: Callable[[str], str], path: str) -> None:
    url = service_url(path)
    assert post(url, path, padded(path, LIMIT), "application/json").status_code == 200
    assert_error(post(url, path, padded(path, LIMIT + 1), "application/json"), 413, "payload_too_large")
    assert_alive(url)


@pytest.mark.parametrize("path", list(VALID))
def test_a_chunked_body_within_the_limit_is_read(service_url: Callable[[str], str], path: str) -> None:
    body = padded(path, LIMIT - 10)
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    assert post(service_url(path), path, chunks, "application/json").status_code == 200


def exchange(url: str, head: bytes, parts: Iterable[bytes]) -> tuple[int, bytes, float]:
    """Send a raw request and read the answer without finishing the body; (status, body, seconds
    from the last byte sent to the whole answer)."""
    where = urlsplit(url)
    assert where.hostname is not None
    with socket.create_connection((where.hostname, where.port or 80), timeout=10) as sock:
        sock.sendall(head)
        for part in parts:
            sock.sendall(part)
        sent = time.monotonic()
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                assert chunk, f"the server closed the connection without an answer: {data!r}"
                data += chunk
            head_bytes, _, body = data.partition(b"\r\n\r\n")
            lines = head_bytes.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:])
            while len(body) < int(headers["content-length"]):
                body += sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"no answer within 10 s: the server waits for the rest of the body ({data[:200]!r})")
        assert headers["content-type"] == "application/json"
        return int(lines[0].split(" ")[1]), body, time.monotonic() - sent


def request_head(path: str, host: str, *headers: str) -> bytes:
    return "\r\n".join(
        [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json", *headers, "", ""]
    ).encode()


@pytest.mark.parametrize("path", list(VALID))
def test_a_declared_length_over_the_limit_is_refused_before_the_body_arrives(
    service_url: Callable[[str], str], path: str
) -> None:
    url = service_url(path)
    head = request_head(path, urlsplit(url).netloc, f"Content-Length: {100 * LIMIT}")
    status, body, seconds = exchange(url, head, [b'{"amount": 1, ' * 10])
    assert status == 413
    assert orjson.loads(body)["error"]["type"] == "payload_too_large"
    assert seconds < 2
    assert_alive(url)


@pytest.mark.parametrize("path", list(VALID))
def test_a_chunked_body_over_the_limit_is_refused_while_it_still_arrives(
    service_url: Callable[[str], str], path: str
) -> None:
    url = service_url(path)
    head = request_head(path, urlsplit(url).netloc, "Transfer-Encoding: chunked")
    piece = b" " * 65536
    chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
    # Past the limit, but never the terminating zero-length chunk: only a server that counts
    # while reading can answer.
    status, body, seconds = exchange(url, head, [chunk] * (LIMIT // len(piece) + 2))
    assert status == 413
    assert orjson.loads(body)["error"]["type"] == "payload_too_large"
    assert seconds < 2
    assert_alive(url)

"""Fuzzing the real servers from their own OpenAPI documents (GET /openapi.json) with schemathesis.

Every documented operation gets bodies and headers that fit its schema (positive) and bodies and
headers that break it (negative). Whatever arrives, the server must never answer 5xx, every answer
must match the schema documented for its status, and negative data must be refused with 4xx.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, response_schema_conformance

OPERATIONS = {"fraud": ["/score", "/score_batch"], "digits": ["/classify"]}
"""Prediction routes of each service."""
ADMIN = ["/admin/breakers/reset", "/admin/faults", "/admin/reload"]
"""Admin routes that change the production deployment, on every service."""
ROLLOUTS = {
    "/admin/rollouts": {404, 409, 422},
    "/admin/rollouts/approve": {409},
    "/admin/rollouts/pause": {409},
    "/admin/rollouts/resume": {409},
    "/admin/rollouts/abort": {409},
    "/admin/rollback": {409},
    "/admin/audit/query": {404, 422},  # a whole float for an integer: strict admin bodies refuse it
    "/admin/audit/verify": {404},
}
"""The rollout and audit routes and what a well-formed request gets on a server with no rollout,
random versions and no audit trail: refusals the documents list, never a 5xx."""
EXAMPLES = 60
"""Per prediction route and mode."""
ADMIN_EXAMPLES = 20
"""Per admin route and mode (their bodies are small and flat)."""
RELOAD_EXAMPLES = 5
"""A valid reload loads and warms both models again."""
TOKEN = "fuzz-admin-token-0123456789"


SHORT_DEADLINE_MS = 1000.0
"""A client deadline below this may fairly end in the documented 504 (no stage could answer in
time: digits has no rule stage) or 503 (shed: cannot finish in time) on a busy 2-core machine."""


def deadline_ms(case: Case[Any]) -> float | None:
    value = next((v for k, v in (case.headers or {}).items() if k.lower() == "x-request-timeout-ms"), None)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def no_server_error(ctx: Any, response: Any, case: Case[Any]) -> bool | None:
    """schemathesis's ``not_a_server_error``, except for the documented answer to a deadline the
    client itself made too short."""
    ms = deadline_ms(case)
    if response.status_code in (503, 504) and ms is not None and 0 < ms < SHORT_DEADLINE_MS:
        error = response.json()["error"]
        if isinstance(error, dict):  # Ballast's envelope says which (the protocol's /v2 errors are a message)
            assert error["type"] == {503: "overloaded", 504: "deadline_exceeded"}[response.status_code], response.text
        return None
    return not_a_server_error(ctx, response, case)


@pytest.fixture
def service_url(request: pytest.FixtureRequest) -> Callable[[str], str]:
    def get(service: str) -> str:
        return str(request.getfixturevalue(f"{service}_url"))

    return get


@pytest.mark.parametrize("service", list(OPERATIONS))
def test_every_documented_operation_is_fuzzed(service_url: Callable[[str], str], service: str) -> None:
    spec = httpx.get(f"{service_url(service)}/openapi.json", timeout=10).json()
    documented = sorted(f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item)
    posted = [*OPERATIONS[service], *ADMIN, *ROLLOUTS]
    assert documented == sorted([*(f"POST {path}" for path in posted), "GET /admin/models", "GET /v1/drift"])


def fuzz(
    url: str,
    path: str,
    mode: GenerationMode,
    examples: int,
    headers: dict[str, str] | None = None,
    *,
    method: str = "POST",
    document: str = "/openapi.json",
    errors: type = dict,
) -> Counter[tuple[int, str]]:
    """Run ``examples`` generated requests against ``method path`` of the OpenAPI ``document``; the
    (status, error message) pairs seen (the message is empty for 2xx). An error's ``error`` is an
    ``errors``: Ballast's envelope (a dict), or the Open Inference Protocol's message (a str)."""
    operation = schemathesis.openapi.from_url(f"{url}{document}")[path][method]
    checks: list[Callable[..., bool | None]] = [no_server_error, response_schema_conformance]
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)
    statuses: Counter[tuple[int, str]] = Counter()
    session = requests.Session()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case[Any]) -> None:
        response = case.call(session=session, headers=headers, timeout=30)
        case.validate_response(response, checks=checks, headers=headers)
        message = ""
        if response.status_code >= 400 and path != "/v2/health/ready":  # its 503 says {"ready": false}
            error = response.json()["error"]
            assert isinstance(error, errors), response.text
            message = str(error["message"] if isinstance(error, dict) else error)
        statuses[response.status_code, message] += 1

    run()
    assert httpx.get(f"{url}/livez", timeout=5).status_code == 200
    return statuses


def count(statuses: Counter[tuple[int, str]], low: int, high: int | None = None) -> int:
    """How many answers had a status from ``low`` to ``high`` (default: just ``low``)."""
    return sum(n for (status, _), n in statuses.items() if low <= status <= (high or low))


MODES = pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)


@MODES
@pytest.mark.parametrize(
    ("service", "path"), [(service, path) for service, paths in OPERATIONS.items() for path in paths], ids=str
)
def test_fuzzed_predictions_never_get_a_5xx_and_answers_match_the_schema(
    service_url: Callable[[str], str], service: str, path: str, mode: GenerationMode
) -> None:
    statuses = fuzz(service_url(service), path, mode, EXAMPLES)
    # The run exercised what it claims: valid bodies were served, invalid ones refused.
    assert (count(statuses, 200) if mode is GenerationMode.POSITIVE else count(statuses, 400, 499)) > 0, statuses


@MODES
@pytest.mark.parametrize("path", [*ADMIN, *ROLLOUTS])
@pytest.mark.parametrize("service", list(OPERATIONS))
def test_fuzzed_admin_requests_without_the_token_are_all_403(
    service_url: Callable[[str], str], service: str, path: str, mode: GenerationMode
) -> None:
    """The shared servers run without BALLAST_ADMIN_TOKEN: nothing generated gets past that. (A
    malformed X-Request-Timeout-Ms is refused with 400 before credentials are looked at.)"""
    statuses = fuzz(service_url(service), path, mode, ADMIN_EXAMPLES)
    assert count(statuses, 403) > 0, statuses
    for status, message in statuses:
        assert status == 403 or (status == 400 and "X-Request-Timeout-Ms" in message), statuses


@pytest.fixture(scope="module")
def admin_url(serve: Callable[..., Any]) -> Iterator[str]:
    with serve("services.fraud:Fraud", BALLAST_ADMIN_TOKEN=TOKEN) as url:
        yield str(url)


@MODES
@pytest.mark.parametrize("path", ADMIN)
def test_fuzzed_admin_requests_with_the_token_never_get_a_5xx(admin_url: str, path: str, mode: GenerationMode) -> None:
    """With the token the bodies are read: valid ones change the server (its own server: faults and
    reloads must not reach the shared one), invalid ones are refused."""
    examples = RELOAD_EXAMPLES if path == "/admin/reload" else ADMIN_EXAMPLES
    statuses = fuzz(admin_url, path, mode, examples, {"Authorization": f"Bearer {TOKEN}"})
    assert (count(statuses, 200) if mode is GenerationMode.POSITIVE else count(statuses, 400, 499)) > 0, statuses


@MODES
@pytest.mark.parametrize("path", list(ROLLOUTS))
def test_fuzzed_rollout_requests_with_the_token_get_documented_refusals(
    admin_url: str, path: str, mode: GenerationMode
) -> None:
    statuses = fuzz(admin_url, path, mode, ADMIN_EXAMPLES, {"Authorization": f"Bearer {TOKEN}"})
    seen = {status for status, _ in statuses}
    credentials = {401, 403}  # the generator also tries its own Authorization headers
    if mode is GenerationMode.POSITIVE:
        assert seen <= ROLLOUTS[path] | credentials | {400}, statuses
    else:
        assert seen <= {400, 404, 409, 413, 415, 422} | credentials, statuses


@pytest.fixture(scope="module")
def audited_url(serve: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("audit") / "audit.sqlite"
    with serve(
        "services.fraud:Fraud", BALLAST_AUDIT_KEY="fuzz-audit-key-0123456789", BALLAST_AUDIT_PATH=str(path)
    ) as url:
        yield str(url)


@MODES
def test_fuzzed_feedback_never_gets_a_5xx(audited_url: str, mode: GenerationMode) -> None:
    """Labels for ids the trail never saw are accepted and reported unknown; bad bodies are refused."""
    spec = httpx.get(f"{audited_url}/openapi.json", timeout=10).json()
    assert "/v1/feedback" in spec["paths"]
    statuses = fuzz(audited_url, "/v1/feedback", mode, ADMIN_EXAMPLES)
    seen = {status for status, _ in statuses}
    if mode is GenerationMode.POSITIVE:
        assert count(statuses, 200) > 0, statuses
        assert seen <= {200, 400}, statuses
    else:
        assert count(statuses, 400, 499) > 0, statuses
        assert seen <= {200, 400, 413, 415, 422}, statuses


V2_EXAMPLES = 25
"""Per /v2 operation and mode."""


@MODES
def test_fuzzed_v2_requests_never_get_a_5xx_and_answers_match_the_v2_document(
    digits_url: str, mode: GenerationMode
) -> None:
    spec = httpx.get(f"{digits_url}/v2/openapi.json", timeout=10).json()
    operations = sorted((path, method.upper()) for path, item in spec["paths"].items() for method in item)
    models = [
        (f"/v2/models/{model}{action}", method)
        for model in ("digits-mlp", "digits-mlp-small")  # the primary and its fallback, each by name
        for action, method in (("", "GET"), ("/config", "GET"), ("/ready", "GET"), ("/infer", "POST"))
    ]
    assert operations == sorted([("/v2", "GET"), ("/v2/health/live", "GET"), ("/v2/health/ready", "GET"), *models])
    if mode is GenerationMode.NEGATIVE:  # the GETs have nothing to break (any X-Request-ID is taken)
        operations = [(p, m) for p, m in operations if "requestBody" in spec["paths"][p][m.lower()]]
    seen = {
        (path, method): fuzz(
            digits_url, path, mode, V2_EXAMPLES, method=method, document="/v2/openapi.json", errors=str
        )
        for path, method in operations
    }
    infer = seen["/v2/models/digits-mlp/infer", "POST"] + seen["/v2/models/digits-mlp-small/infer", "POST"]
    by_status = {op: Counter(status for (status, _), n in s.items() for _ in range(n)) for op, s in seen.items()}
    print(f"\n/v2 fuzzing ({mode.value}): " + "; ".join(f"{m} {p} {dict(s)}" for (p, m), s in by_status.items()))
    if mode is GenerationMode.POSITIVE:
        assert count(infer, 200) > 0, infer  # the schema's valid requests include ones the model takes
        assert all(count(s, 200) > 0 for (p, m), s in seen.items() if m == "GET"), seen
    else:
        assert count(infer, 400, 499) > 0, infer

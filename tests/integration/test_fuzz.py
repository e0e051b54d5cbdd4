"""Fuzzing the real servers from their own OpenAPI documents (GET /openapi.json) with schemathesis.

Every documented operation gets bodies and headers that fit its schema (positive) and bodies and
headers that break it (negative). Whatever arrives, the server must never answer 5xx, every answer
must match the schema documented for its status, and negative data must be refused with 4xx.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
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
EXAMPLES = 60
"""Per operation and mode: 6 runs of 60 requests stay well under a minute on 2 cores."""


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
        kind = response.json()["error"]["type"]
        assert kind == {503: "overloaded", 504: "deadline_exceeded"}[response.status_code], response.text
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
    assert documented == sorted(f"POST {path}" for path in OPERATIONS[service])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize(
    ("service", "path"),
    [(service, path) for service, paths in OPERATIONS.items() for path in paths],
    ids=lambda value: str(value),
)
def test_fuzzed_requests_never_get_a_5xx_and_answers_match_the_schema(
    service_url: Callable[[str], str], service: str, path: str, mode: GenerationMode
) -> None:
    url = service_url(service)
    operation = schemathesis.openapi.from_url(f"{url}/openapi.json")[path]["POST"]
    checks: list[Callable[..., bool | None]] = [no_server_error, response_schema_conformance]
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)
    statuses: Counter[int] = Counter()
    session = requests.Session()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Case[Any]) -> None:
        response = case.call(session=session, timeout=30)
        case.validate_response(response, checks=checks)
        statuses[response.status_code] += 1

    fuzz()
    # The run exercised what it claims: valid bodies were served, invalid ones refused.
    if mode is GenerationMode.POSITIVE:
        assert statuses[200] > 0, statuses
    else:
        assert sum(n for status, n in statuses.items() if 400 <= status < 500) > 0, statuses
    assert httpx.get(f"{url}/livez", timeout=5).status_code == 200

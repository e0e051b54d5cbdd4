"""Every endpoint's OpenAPI example works against the live server and its answer fits the schema."""

from __future__ import annotations

import httpx
import jsonschema
import pytest


@pytest.mark.parametrize("service", ["fraud", "digits"])
def test_every_example_works_and_answers_match_the_schema(service: str, fraud_url: str, digits_url: str) -> None:
    url = {"fraud": fraud_url, "digits": digits_url}[service]
    spec = httpx.get(f"{url}/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert spec["paths"], "no endpoints documented"
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if method == "get":
                response = httpx.get(f"{url}{path}", timeout=10)
            else:
                content = operation["requestBody"]["content"]["application/json"]
                jsonschema.validate(content["example"], content["schema"])
                response = httpx.request(method, f"{url}{path}", json=content["example"], timeout=10)
            if operation.get("security"):  # admin: off on these servers (tests/integration/test_admin.py)
                assert response.status_code == 403, (path, response.text)
                jsonschema.validate(
                    response.json(), operation["responses"]["403"]["content"]["application/json"]["schema"]
                )
                continue
            assert response.status_code == 200, (path, response.text)
            ok = operation["responses"]["200"]["content"]["application/json"]
            jsonschema.validate(response.json(), ok["schema"])
            jsonschema.validate(ok["example"], ok["schema"])
            if method != "get":  # a request body: its errors are documented
                assert {"400", "422", "503"} <= set(operation["responses"])

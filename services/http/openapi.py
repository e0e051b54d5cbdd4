"""The documents that describe a service's routes, built from what the routes declare:

* the OpenAPI 3.1 document (``/openapi.json``; merged into BentoML's own at ``/docs.json``, which
  BentoML's Swagger UI at ``/`` shows);
* BentoML's service schema (``/schema.json``), from which ``bentoml.SyncHTTPClient`` and
  ``AsyncHTTPClient`` make their methods (``client.score(...)``).

Schemas arrive as JSON Schema (derived from pydantic types by the declaration); ``$defs`` are inlined
so that each route's schema stands alone.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .envelope import ErrorEnvelope
from .routes import Route

ERROR_TEXT = {
    400: "the body is not JSON, or not the expected shape",
    401: "credentials missing (WWW-Authenticate says which)",
    403: "credentials wrong, or admin endpoints disabled",
    404: "no such version in the model store",
    405: "wrong HTTP method",
    409: "the rollout's state does not allow it",
    413: "the body is too large",
    415: "the body is not application/json",
    422: "the request breaks validation rules; every violation is listed",
    500: "internal error; the body carries only a request id",
    503: "overloaded or no model available; retry after Retry-After seconds",
    504: "the request's deadline passed",
}
PREDICTION_ERRORS = (400, 413, 415, 422, 503)
SECURITY_SCHEMES = {
    "adminToken": {"type": "http", "scheme": "bearer", "description": "BALLAST_ADMIN_TOKEN"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "BALLAST_API_KEY"},
}
HEADERS = [
    {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "your id for the request: echoed back when it matches ^[A-Za-z0-9._-]{1,64}$, "
        "otherwise replaced by a new one (never refused)",
    },
    {
        "name": "X-Request-Timeout-Ms",
        "in": "header",
        "required": False,
        "schema": {"type": "number", "exclusiveMinimum": 0},
        "description": "deadline, capped by the server's BALLAST_REQUEST_TIMEOUT_MS",
    },
]


@dataclass(frozen=True)
class RouteDoc:
    """What the documents say about one route."""

    route: Route
    name: str
    """The operation id, and the method name BentoML's clients give the route."""
    summary: str
    request_schema: dict[str, Any]
    response_schema: dict[str, Any]
    request_example: Any
    response_example: Any
    errors: tuple[int, ...] = PREDICTION_ERRORS
    """Error statuses the route may answer besides 500 (and 401/403 where credentials apply)."""


def inline(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every ``$ref`` into its ``$defs`` replaced by the definition."""
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                merged = {**resolve(copy.deepcopy(definitions[ref.removeprefix("#/$defs/")])), **node}
                merged.pop("$ref")
                return merged
            return {k: resolve(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


ERROR_SCHEMA = inline(ErrorEnvelope.model_json_schema())


def document(title: str, description: str, routes: Sequence[RouteDoc], *, api_key: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``; ``api_key``: prediction routes need ``X-API-Key``."""
    paths: dict[str, Any] = {}
    for doc in routes:
        r = doc.route
        security: list[dict[str, list[str]]] = (
            [{"adminToken": []}] if r.admin else ([{"apiKey": []}] if api_key else [])
        )
        errors = {*doc.errors, 500, *((401, 403) if security else ())}
        responses: dict[str, Any] = {
            "200": {
                "description": "the server's state after the change" if r.admin else "the prediction",
                "content": {"application/json": {"schema": doc.response_schema, "example": doc.response_example}},
            },
        }
        for status in sorted(errors):
            responses[str(status)] = {
                "description": ERROR_TEXT[status],
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            }
        body = {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": doc.request_schema, "example": doc.request_example}},
            }
        }
        paths[r.path] = {
            r.method.lower(): {
                "summary": doc.summary,
                "operationId": doc.name,
                "parameters": HEADERS,
                **(body if r.method != "GET" else {}),
                "responses": responses,
                **({"security": security} if security else {}),
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1", "description": description},
        "paths": paths,
        "components": {"securitySchemes": SECURITY_SCHEMES},
    }


def merged(bentoml_document: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """BentoML's OpenAPI document (its health and metrics routes) with Ballast's routes added."""
    result = copy.deepcopy(bentoml_document)
    result.setdefault("paths", {}).update(ours["paths"])
    schemes = result.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes.update(ours["components"]["securitySchemes"])
    result["info"] = {**result.get("info", {}), "description": ours["info"]["description"]}
    return result


def bentoml_schema(name: str, description: str, routes: Sequence[RouteDoc]) -> dict[str, Any]:
    """BentoML's service schema (``/schema.json``) for the routes that take a body: each route's name
    is the client's method, its request's properties the method's keyword arguments (BentoML's
    clients only post, so a GET route such as ``/v1/drift`` is not listed)."""
    return {
        "name": name,
        "type": "service",
        "description": description,
        "routes": [
            {
                "name": doc.name,
                "route": doc.route.path,
                "description": doc.summary,
                "batchable": False,
                "input": doc.request_schema,
                "output": doc.response_schema,
                "is_task": False,
            }
            for doc in routes
            if not doc.route.admin and doc.route.method == "POST"
        ],
    }

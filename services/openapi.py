"""The OpenAPI document of a Ballast service, built from its routes (served at /openapi.json)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runtime import Field

from .http import Route

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "request_id"],
            "properties": {
                "type": {"type": "string", "examples": ["validation_error"]},
                "message": {"type": "string"},
                "request_id": {"type": ["string", "null"]},
                "fields": {
                    "type": "array",
                    "description": "every violation, for validation errors",
                    "items": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string", "examples": ["[2].amount"]},
                            "rule": {"type": "string", "examples": ["range"]},
                            "message": {"type": "string"},
                            "value": {},
                        },
                    },
                },
            },
        }
    },
}
ERROR_TEXT = {
    400: "the body is not JSON, or not the expected shape",
    401: "credentials missing (WWW-Authenticate says which)",
    403: "credentials wrong, or admin endpoints disabled",
    405: "wrong HTTP method",
    413: "the body is too large",
    415: "the body is not application/json",
    422: "the request breaks validation rules; every violation is listed",
    500: "internal error; the body carries only a request id",
    503: "overloaded or no model available; retry after Retry-After seconds",
    504: "the request's deadline passed",
}
PROVENANCE = {
    "request_id": {"type": "string"},
    "served_by": {"type": "string", "description": "the chain stage that answered"},
    "degraded": {"type": "boolean", "description": "true when the primary model did not answer"},
    "model": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        "required": ["name", "version"],
    },
}


def record_schema(fields: Sequence[Field]) -> dict[str, Any]:
    """JSON Schema of one record of a :class:`runtime.RecordSchema`."""
    properties: dict[str, Any] = {}
    for f in fields:
        if f.kind == "category":
            prop: dict[str, Any] = {"type": "string", "enum": list(f.categories)}
        else:
            prop = {"type": f.kind}
            if f.minimum is not None:
                prop["minimum"] = f.minimum
            if f.maximum is not None:
                prop["maximum"] = f.maximum
        if f.description:
            prop["description"] = f.description
        properties[f.name] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": [f.name for f in fields],
        "additionalProperties": False,
    }


SECURITY_SCHEMES = {
    "adminToken": {"type": "http", "scheme": "bearer", "description": "BALLAST_ADMIN_TOKEN"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "BALLAST_API_KEY"},
}


def document(title: str, description: str, routes: Sequence[Route], *, api_key: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``; ``api_key``: prediction routes need ``X-API-Key``."""
    paths: dict[str, Any] = {}
    for r in routes:
        security: list[dict[str, list[str]]] = (
            [{"adminToken": []}] if r.admin else ([{"apiKey": []}] if api_key else [])
        )
        errors = {*r.errors, 500, *((401, 403) if security else ())}
        responses: dict[str, Any] = {
            "200": {
                "description": "the server's state after the change" if r.admin else "the prediction",
                "content": {"application/json": {"schema": r.response_schema, "example": r.response_example}},
            },
        }
        for status in sorted(errors):
            responses[str(status)] = {
                "description": ERROR_TEXT[status],
                "content": {"application/json": {"schema": ERROR}},
            }
        paths[r.path] = {
            r.method.lower(): {
                "summary": r.summary,
                "operationId": r.attribute,
                "parameters": [
                    {
                        "name": "X-Request-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "your id for the request: echoed back when it matches "
                        "^[A-Za-z0-9._-]{1,64}$, otherwise replaced by a new one (never refused)",
                    },
                    {
                        "name": "X-Request-Timeout-Ms",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "number", "exclusiveMinimum": 0},
                        "description": "deadline, capped by the server's BALLAST_REQUEST_TIMEOUT_MS",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": r.request_schema, "example": r.request_example}},
                },
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

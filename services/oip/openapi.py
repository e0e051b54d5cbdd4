"""The OpenAPI document of a service's ``/v2`` routes (``GET /v2/openapi.json``): the Open Inference
Protocol's paths for this service's model, with the protocol's error form (``{"error": "..."}``),
so that tools that read OpenAPI (schemathesis in the tests, a client generator) see the V2 routes
as they are, beside the service's own document (``/openapi.json``), whose errors have Ballast's
envelope.

The models' paths are written out with their names (``/v2/models/digits-mlp/infer``), not as a
template: a service serves a few models, known when it starts. The inference request's schema is
:class:`~services.oip.tensors.InferRequestIn`'s; an element count that does not match the shape,
which a schema cannot say, is the server's 400.
"""

from __future__ import annotations

from typing import Any

from ..http.openapi import HEADERS, SECURITY_SCHEMES, inline
from .tensors import InferRequestIn

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what was wrong, for a person"},
        "fields": {"type": "array", "items": {"type": "object"}, "description": "each broken rule"},
    },
}
TEXT = {
    400: "the request breaks the protocol or the model's signature",
    401: "credentials missing",
    403: "credentials wrong",
    404: "no such model or version here",
    405: "wrong HTTP method",
    413: "the body is too large",
    500: "internal error",
    503: "not ready, or overloaded: retry after Retry-After seconds",
    504: "the request's deadline passed",
}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required if required is not None else list(properties),
        "properties": properties,
    }


STRINGS = {"type": "array", "items": {"type": "string"}}
TENSOR = _object(
    {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    }
)
MODEL_READY = _object({"name": {"type": "string"}, "ready": {"type": "boolean"}})
SERVER = _object({"name": {"type": "string"}, "version": {"type": "string"}, "extensions": STRINGS})
METADATA = _object(
    {
        "name": {"type": "string"},
        "versions": STRINGS,
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": TENSOR},
        "outputs": {"type": "array", "items": TENSOR},
    }
)
CONFIG_TENSOR = _object(
    {
        "name": {"type": "string"},
        "data_type": {"type": "string"},
        "dims": {"type": "array", "items": {"type": "integer"}},
    }
)
CONFIG = _object(
    {
        "name": {"type": "string"},
        "platform": {"type": "string"},
        "backend": {"type": "string"},
        "max_batch_size": {"type": "integer"},
        "input": {"type": "array", "items": CONFIG_TENSOR},
        "output": {"type": "array", "items": CONFIG_TENSOR},
        "dynamic_batching": {"type": "object"},
    },
    ["name", "platform", "backend", "max_batch_size", "input", "output"],
)
INFERRED = _object(
    {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "outputs": {
            "type": "array",
            "items": _object(
                {
                    "name": {"type": "string"},
                    "datatype": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "data": {"type": "array"},
                    "parameters": {"type": "object"},
                },
                ["name", "datatype", "shape"],
            ),
        },
    },
    ["model_name", "model_version", "outputs"],
)


def _operation(
    summary: str,
    schema: dict[str, Any],
    errors: tuple[int, ...],
    *,
    keyed: bool,
    body: tuple[dict[str, Any], Any] | None = None,
    failed: dict[str, Any] = ERROR,
) -> dict[str, Any]:
    """One operation: its 200 answer's ``schema``, its ``errors`` (answered as ``failed``), whether
    the service's API key applies (``keyed``), and its JSON ``body`` schema and example."""
    statuses = sorted({*errors, 500, *((401, 403) if keyed else ())})
    responses: dict[str, Any] = {
        "200": {"description": "the answer", "content": {"application/json": {"schema": schema}}}
    }
    for status in statuses:
        responses[str(status)] = {"description": TEXT[status], "content": {"application/json": {"schema": failed}}}
    headers = (
        HEADERS if body is not None else [h for h in HEADERS if h["name"] == "X-Request-ID"]
    )  # deadlines: infer only
    operation: dict[str, Any] = {"summary": summary, "parameters": headers, "responses": responses}
    if body is not None:
        request, example = body
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": request, "example": example}},
        }
        responses["200"]["content"]["application/octet-stream"] = {  # binary outputs asked for
            "schema": {"type": "string", "format": "binary"}
        }
    if keyed:
        operation["security"] = [{"apiKey": []}]
    return operation


def document(
    service: str, models: list[str], infer_example: dict[str, Any] | None, *, api_key: bool, description: str = ""
) -> dict[str, Any]:
    """The ``/v2`` document of ``service`` serving ``models`` (the primary first; a fallback's
    inference begins the chain with it); ``infer_example``: a valid inference request (``None``: the
    service takes records, and V2 inference is not offered); ``api_key``: the model routes need
    ``X-API-Key`` (health never does)."""
    paths: dict[str, Any] = {
        "/v2/health/live": {
            "get": _operation("the server is alive", _object({"live": {"type": "boolean"}}), (), keyed=False)
        },
        "/v2/health/ready": {
            "get": _operation(
                "the server is ready (503 with ready false while it loads)",
                _object({"ready": {"type": "boolean"}}),
                (503,),
                keyed=False,
                failed=_object({"ready": {"type": "boolean"}}),
            )
        },
        "/v2": {"get": _operation("the server's name, version and protocol extensions", SERVER, (), keyed=False)},
    }
    for model in models:
        base = f"/v2/models/{model}"
        paths[base] = {"get": _operation(f"{model}'s metadata: its tensors", METADATA, (404, 503), keyed=api_key)}
        paths[f"{base}/ready"] = {
            "get": _operation(
                f"whether {model} is ready (200; 503 with ready false while it loads)",
                MODEL_READY,
                (404, 503),
                keyed=api_key,
                failed={"anyOf": [ERROR, MODEL_READY]},
            )
        }
        paths[f"{base}/config"] = {
            "get": _operation(f"{model}'s configuration, as Triton's tools read it", CONFIG, (404, 503), keyed=api_key)
        }
        if infer_example is not None:
            summary = "inference through the service's pipeline (validation, batching, fallbacks, hooks)"
            if model != models[0]:
                summary = f"inference beginning the service's chain with {model} (a fallback)"
            paths[f"{base}/infer"] = {
                "post": _operation(
                    summary,
                    INFERRED,
                    (400, 404, 413, 503, 504),
                    keyed=api_key,
                    body=(inline(InferRequestIn.model_json_schema()), infer_example),
                )
            }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Ballast {service}: Open Inference Protocol",
            "version": "2",
            "description": description or "The Open Inference Protocol (KServe V2) routes of this service.",
        },
        "paths": paths,
        "components": {"securitySchemes": {"apiKey": SECURITY_SCHEMES["apiKey"]}},
    }

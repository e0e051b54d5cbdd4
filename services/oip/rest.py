"""The Open Inference Protocol's REST routes (``/v2``) for one service, beside its own routes.

    GET  /v2                                        server metadata: name, version, extensions
    GET  /v2/health/live | /v2/health/ready         {"live": true} / {"ready": ...} (503 when not)
    GET  /v2/models/{model}[/versions/{version}]    model metadata: platform, inputs, outputs
    GET  /v2/models/{model}[/versions/{version}]/ready
    GET  /v2/models/{model}[/versions/{version}]/config    Triton's model configuration, minimal
    POST /v2/models/{model}[/versions/{version}]/infer     inference (JSON, or binary tensors)

``{model}`` is the service's primary model (``digits-mlp``); without a version the request goes
where the service's own routes send it (production, or a rollout's canary by routing key), with a
version only to that version when it is deployed here (production or the candidate). An inference
request's tensors are the model's own inputs (tensors.py checks them), laid out as the service
declares (a declared ``images`` of 8 x 8 fed to the model's ``input`` of 64 takes ``input``), and
answered through the service's pipeline as its own routes are: validation, batching, the fallback
chain, breakers, hooks, metrics, the audit trail, a rollout's gates. The response's ``parameters``
say who answered (``served_by``, ``degraded``, ``route``, ``request_id``).

Errors are ``{"error": "..."}`` (with ``fields`` for a validation failure): 400 for a bad request,
404 for an unknown model, version or path, 405, 413, 503 with Retry-After when not ready or
overloaded, 500 with nothing of the internals.

A service that takes records (``fraud``) takes them as columns, one input per field of its record
(records.py); they are checked as its records route checks them, and answered with the model's
outputs.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from runtime import ModelSignature, OnnxModel, Pipeline, TensorSchema
from runtime.core.codes import Arm
from runtime.core.errors import BadRequest, BallastError, Overloaded, ValidationFailed
from runtime.core.record import new_request_id

from ..declaration import Declaration
from ..endpoints import Endpoints, Traffic
from ..http import codecs
from ..http.auth import Credentials
from ..http.codecs import Receive, Scope, Send, header, respond
from ..http.envelope import HTTPError, HttpErrorType
from ..http.routes import RequestInfo
from . import openapi as oip_openapi
from .records import decode_records, errors_at, fields_of, metadata_inputs
from .records import example as records_example
from .tensors import HEADER, Decode, datatype_of, encode_response, parse_request

log = logging.getLogger("ballast.oip")

PREFIX = "/v2"
EXTENSIONS = ("binary_tensor_data", "model_configuration")
JSON = b"application/json"
BINARY = b"application/octet-stream"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a path points: a model (and version) and what is asked of it."""

    model: str
    version: str | None
    action: str
    """``metadata``, ``ready``, ``config`` or ``infer``."""


def parse_path(path: str) -> Target | str | None:
    """``/v2/...`` as a server action (``server``, ``live``, ``ready``), a :class:`Target`, or
    ``None`` (no such route)."""
    parts = path.removeprefix(PREFIX).strip("/").split("/") if path != PREFIX else []
    if not parts:
        return "server"
    if parts == ["openapi.json"]:
        return "openapi"
    if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
        return parts[1]
    if parts[0] != "models" or len(parts) < 2 or not parts[1]:
        return None
    model, rest = parts[1], parts[2:]
    version = None
    if rest[:1] == ["versions"]:
        if len(rest) < 2 or not rest[1]:
            return None
        version, rest = rest[1], rest[2:]
    if not rest:
        return Target(model, version, "metadata")
    if len(rest) == 1 and rest[0] in ("ready", "config", "infer"):
        return Target(model, version, rest[0])
    return None


class OipRoutes:
    """The ``/v2`` routes of one service (an ASGI app the front door hands every path under ``/v2``)."""

    prefix = PREFIX

    def __init__(
        self,
        declaration: Declaration,
        traffic: Callable[[], Traffic],
        endpoints: Endpoints,
        *,
        ready: Callable[[], bool],
        credentials: Credentials,
        max_body_bytes: int,
        max_rows: int,
        server_version: str,
    ) -> None:
        self.declaration = declaration
        self.records = declaration.kind == "records"
        """The service takes records, which it makes into tensors (``kind`` is worked out on each call)."""
        self.fields = fields_of(declaration.request) if self.records and declaration.request else ()
        """A records service's inputs: the fields of its record."""
        self.traffic = traffic
        self.endpoints = endpoints
        self.ready = ready
        self.credentials = credentials
        self.body = codecs.BodyReader(max_body_bytes)
        self.max_rows = max_rows
        self.server_version = server_version
        self.model = declaration.primary.model
        self.models = [stage.model for stage in declaration.models]
        """Every model of the service, the primary first: each is addressable by name (a fallback's
        inference begins the chain with it)."""

    prediction_suffix = "/infer"
    prediction_label = PREFIX + "/models/{model}/infer"

    def is_prediction(self, path: str) -> bool:
        return path.endswith(self.prediction_suffix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope["headers"]
        request_id = codecs.request_id(headers) or new_request_id()
        try:
            found = parse_path(scope["path"])
            if found is None:
                raise HTTPError(404, HttpErrorType.NOT_FOUND, f"no route {scope['path']}")
            method = "POST" if isinstance(found, Target) and found.action == "infer" else "GET"
            if scope["method"] != method:
                await self._error(send, 405, f"use {method}", request_id, [(b"allow", method.encode())])
                return
            who = None
            if found not in ("live", "ready", "openapi"):  # health needs no key, like /livez and /readyz
                caller = self.credentials.caller(headers)
                who = caller.name if caller is not None else None
            if isinstance(found, str):
                await self._server(send, found, request_id)
                return
            pipeline, arm = self.pick(found.model, found.version, request_id, headers)
            if found.action == "infer":
                await self._infer(found, pipeline, arm, scope, receive, send, request_id, who)
            elif found.action == "ready":
                ready = pipeline.ready  # the protocol: 200 says ready (clients read the status only)
                await self._json(send, {"name": found.model, "ready": ready}, request_id, 200 if ready else 503)
            elif found.action == "config":
                await self._json(send, self.config(pipeline, found.model), request_id)
            else:
                await self._json(send, self.metadata(pipeline, found.model), request_id)
        except ValidationFailed as exc:
            message = "; ".join(f"{e.path}: {e.message}" for e in exc.errors)
            fields = [e.as_dict() for e in exc.errors]
            await self._error(send, 400, message, request_id, fields=fields)
        except Overloaded as exc:
            retry = [(b"retry-after", str(exc.retry_after_header).encode())]
            await self._error(send, 503, str(exc), request_id, retry)
        except BallastError as exc:
            status = 400 if exc.status == 422 else exc.status
            message = str(exc) if status < 500 else exc.public_message
            extra = list(getattr(exc, "headers", ()))
            if status == 503:
                extra.append((b"retry-after", b"1"))
            await self._error(send, status, message, request_id, extra)
        except Exception:
            log.exception("unhandled error on %s (request %s)", scope["path"], request_id)
            await self._error(send, 500, "internal error", request_id)

    # --- what each route answers ----------------------------------------------------------------

    async def _server(self, send: Send, action: str, request_id: str) -> None:
        if action == "server":
            body = {"name": f"ballast-{self.declaration.name}", "version": self.server_version}
            await self._json(send, {**body, "extensions": list(EXTENSIONS)}, request_id)
        elif action == "live":
            await self._json(send, {"live": True}, request_id)
        elif action == "openapi":
            await self._json(send, self.openapi(), request_id)
        else:
            ready = self.ready()
            await self._json(send, {"ready": ready}, request_id, 200 if ready else 503)

    def pick(self, model: str, version: str | None, request_id: str, headers: Any) -> tuple[Pipeline, Arm]:
        """The pipeline that answers ``model`` (at ``version``, when given) for this request. The
        primary's versions are the deployments (production, a rollout's candidate); a fallback's is
        the version of it that the deployment picked for the request holds."""
        if model not in self.models:
            served = ", ".join(repr(m) for m in self.models)
            raise HTTPError(404, HttpErrorType.NOT_FOUND, f"no model {model!r} here; this service serves {served}")
        if not self.ready():
            raise HTTPError(503, HttpErrorType.NOT_READY, f"{self.model} is not ready yet")
        traffic = self.traffic()
        if model != self.model:
            picked = traffic.pick(codecs.routing_key(headers) or request_id)
            if version and version != self.stage_model(picked[0], model).version:
                raise HTTPError(404, HttpErrorType.NOT_FOUND, f"version {version!r} of {model!r} is not loaded here")
            return picked
        if not version:
            return traffic.pick(codecs.routing_key(headers) or request_id)
        found = traffic.find(version)
        if found is None:
            raise HTTPError(404, HttpErrorType.NOT_FOUND, f"version {version!r} of {self.model!r} is not deployed here")
        return found

    @staticmethod
    def stage_model(pipeline: Pipeline, name: str) -> OnnxModel:
        """The model called ``name`` in ``pipeline``'s chain."""
        for stage in pipeline.chain.stages:
            if stage.model.name == name:
                return stage.model
        raise HTTPError(404, HttpErrorType.NOT_FOUND, f"no model {name!r} in this deployment")

    def openapi(self) -> dict[str, Any]:
        """The ``/v2`` routes' OpenAPI document (services/oip/openapi.py), with a valid inference
        request of the model that answers now as the example."""
        if self.records and self.declaration.request is not None:
            example = records_example(self.declaration.request, self.fields)
        else:
            if not self.ready():
                raise HTTPError(503, HttpErrorType.NOT_READY, "the models are loading; retry")
            pipeline, _ = self.traffic().pick("openapi")
            example = infer_example(pipeline.chain.primary.model.signature)
        return oip_openapi.document(self.declaration.name, self.models, example, api_key=self.credentials.api_key)

    def metadata(self, pipeline: Pipeline, name: str | None = None) -> dict[str, Any]:
        """The metadata of model ``name`` (default: the primary) in ``pipeline``."""
        model = self.stage_model(pipeline, name or self.model)
        signature = model.signature
        return {
            "name": model.name,
            "versions": [pipeline.version if model.name == self.model else model.version],
            "platform": "onnxruntime_onnx",
            "inputs": self.inputs(signature),
            "outputs": _tensors(signature, "outputs"),
        }

    def inputs(self, signature: ModelSignature) -> list[dict[str, Any]]:
        """The inputs a request gives: the model's, or a records service's fields."""
        return metadata_inputs(self.fields) if self.records else _tensors(signature, "inputs")

    def config(self, pipeline: Pipeline, name: str | None = None) -> dict[str, Any]:
        """Triton's model configuration of model ``name`` (default: the primary), as far as tools read it."""
        model = self.stage_model(pipeline, name or self.model)
        signature = model.signature
        return {
            "name": model.name,
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "max_batch_size": self.max_rows if model.batchable else 0,
            "input": [_config_tensor(t, model.batchable) for t in self.inputs(signature)],
            "output": [_config_tensor(t, model.batchable) for t in _tensors(signature, "outputs")],
            **({"dynamic_batching": {}} if model.batchable else {}),
        }

    async def _infer(
        self,
        target: Target,
        pipeline: Pipeline,
        arm: Arm,
        scope: Scope,
        receive: Receive,
        send: Send,
        rid: str,
        principal: str | None,
    ) -> None:
        headers = scope["headers"]
        body = await self.body.raw(headers, receive)
        length = header(headers, HEADER.encode())
        signature = self.stage_model(pipeline, target.model).signature
        request = parse_request(
            body, length.decode("latin-1") if length else None, signature, self.max_rows, self.decode_records
        )
        for said, meant, what in (
            (request.model_name, target.model, "model_name"),
            (request.model_version, target.version, "model_version"),
        ):
            if said is not None and meant is not None and said != meant:
                raise BadRequest(f"the body's {what} is {said!r}, the path's {meant!r}")
        payload = request.inputs if self.records else self.payload(pipeline, request.inputs)
        info = RequestInfo(
            rid,
            codecs.timeout(headers),
            routing_key=codecs.routing_key(headers),
            principal=principal,
            no_cache=codecs.no_cache(headers),
        )
        try:
            prediction, arm = await self.endpoints.answer(payload, info, pipeline, arm, model=target.model)
        except ValidationFailed as exc:
            raise (errors_at(exc, request.names) if self.records else exc) from None
        names = request.outputs or tuple(prediction.outputs)
        outputs = {name: prediction.outputs[name] for name in names}
        parameters = {
            "request_id": prediction.request_id,
            "served_by": prediction.served_by,
            "degraded": prediction.degraded,
            "route": arm.value,
        }
        text, json_length = encode_response(
            target.model, prediction.model_version, request.id, outputs, request.binary, parameters
        )
        extra = [] if json_length is None else [(HEADER.encode(), str(json_length).encode())]
        await respond(send, 200, text, rid, extra, JSON if json_length is None else BINARY)

    @property
    def decode_records(self) -> Decode | None:
        """A records service's decoding of its inputs (``None``: the model's tensors)."""
        if not self.records:
            return None
        return functools.partial(decode_records, fields=self.fields, max_rows=self.max_rows)

    def payload(self, pipeline: Pipeline, inputs: dict[str, Any]) -> dict[str, Any]:
        """The model's input tensors as the service's payload: a declared tensor fed to a model input
        (``feeds``) takes that input's rows laid out as declared."""
        schema = pipeline.validator.schema
        if not isinstance(schema, TensorSchema) or not schema.feeds:
            return inputs
        payload = dict(inputs)
        declared = {spec.name: spec for spec in schema.specs}
        for name, (target, _) in schema.feeds.items():
            array = payload.pop(target)
            payload[name] = array.reshape(len(array), *declared[name].row_shape)
        return payload

    # --- answers ---------------------------------------------------------------------------------

    async def _json(self, send: Send, body: dict[str, Any], rid: str, status: int = 200) -> None:
        await respond(send, status, orjson.dumps(body), rid)

    async def _error(
        self,
        send: Send,
        status: int,
        message: str,
        rid: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        fields: list[dict[str, Any]] | None = None,
    ) -> None:
        body: dict[str, Any] = {"error": message}
        if fields:
            body["fields"] = fields
        await respond(send, status, orjson.dumps(body), rid, headers or [])


def infer_example(signature: ModelSignature) -> dict[str, Any]:
    """A valid inference request for ``signature``: one row of zeros per input."""
    inputs = []
    for spec in signature.inputs:
        shape = [1 if d is None else d for d in spec.shape]
        inputs.append(
            {"name": spec.name, "shape": shape, "datatype": datatype_of(spec.dtype), "data": [0] * math.prod(shape)}
        )
    return {"inputs": inputs}


def _tensors(signature: ModelSignature, which: str) -> list[dict[str, Any]]:
    specs = signature.inputs if which == "inputs" else signature.outputs
    return [
        {"name": s.name, "datatype": datatype_of(s.dtype), "shape": [-1 if d is None else d for d in s.shape]}
        for s in specs
    ]


def _config_tensor(tensor: dict[str, Any], batchable: bool) -> dict[str, Any]:
    """A tensor in Triton's configuration: ``TYPE_FP32``, its dimensions without the batch one."""
    dims = tensor["shape"][1:] if batchable else tensor["shape"]
    datatype = "STRING" if tensor["datatype"] == "BYTES" else tensor["datatype"]
    optional = {"optional": True} if tensor.get("parameters", {}).get("optional") else {}
    return {"name": tensor["name"], "data_type": f"TYPE_{datatype}", "dims": dims, **optional}

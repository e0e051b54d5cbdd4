"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` (inference.proto) for
one service, with ``grpc.health.v1``, on grpcio's asyncio server in the worker's own event loop,
answering through the same routes object as ``/v2`` (rest.py): the same model, versions, checks
(tensors.py) and answer path.

Inputs come as ``raw_input_contents`` (one bytes per input, little-endian) or as typed ``contents``;
outputs go back as ``raw_output_contents``, as Triton answers. Errors map from the same typed errors:

    400 (a broken rule, a bad request)   INVALID_ARGUMENT
    401 / 403                            UNAUTHENTICATED / PERMISSION_DENIED
    404                                  NOT_FOUND
    503 (not ready, overloaded)          UNAVAILABLE, with ``retry-after`` in the trailing metadata
    504                                  DEADLINE_EXCEEDED
    anything else                        INTERNAL, with nothing of the internals

A client's deadline is the request's deadline. The API key, when the server has keys, comes as
``x-api-key`` metadata (health needs none).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from runtime.core.errors import BadRequest, BallastError, Overloaded, ValidationFailed
from runtime.core.record import new_request_id

from ..http import codecs
from ..http.envelope import HTTPError
from ..http.routes import RequestInfo
from . import inference_pb2 as pb
from . import inference_pb2_grpc as pb_grpc
from .records import errors_at
from .rest import EXTENSIONS, OipRoutes
from .tensors import DTYPES, Given, datatype_of, decode_inputs

log = logging.getLogger("ballast.oip")

T = TypeVar("T")
SERVICE = "inference.GRPCInferenceService"
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The typed field of ``InferTensorContents`` each datatype's elements come in."""
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class InferenceService:
    """The calls of ``inference.GRPCInferenceService`` (grpcio finds them by name)."""

    def __init__(self, routes: OipRoutes, server_name: str) -> None:
        self.routes = routes
        self.server_name = server_name

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.routes.ready())

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        return await self._guarded(context, lambda: self._server_metadata(context))

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        async def ready() -> pb.ModelReadyResponse:
            self._caller(context)
            if not self.routes.ready():
                return pb.ModelReadyResponse(ready=False)
            try:
                pipeline, _ = self.routes.pick(request.name, request.version or None, "ready", [])
            except HTTPError as exc:
                if exc.status == 404:  # no such model, or its version is not deployed (or loaded) here
                    return pb.ModelReadyResponse(ready=False)
                raise
            return pb.ModelReadyResponse(ready=pipeline.ready)

        return await self._guarded(context, ready)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        async def metadata() -> pb.ModelMetadataResponse:
            self._caller(context)
            pipeline, _ = self.routes.pick(request.name, request.version or None, "metadata", [])
            found = self.routes.metadata(pipeline, request.name)
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=found["name"],
                versions=found["versions"],
                platform=found["platform"],
                inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in found["inputs"]],
                outputs=[tensor(**t) for t in found["outputs"]],
            )

        return await self._guarded(context, metadata)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        async def config() -> pb.ModelConfigResponse:
            self._caller(context)
            pipeline, _ = self.routes.pick(request.name, request.version or None, "config", [])
            found = self.routes.config(pipeline, request.name)
            return pb.ModelConfigResponse(
                config=pb.ModelConfig(
                    name=found["name"],
                    platform=found["platform"],
                    backend=found["backend"],
                    max_batch_size=found["max_batch_size"],
                    input=[pb.ModelInput(**t) for t in found["input"]],
                    output=[pb.ModelOutput(**t) for t in found["output"]],
                    dynamic_batching=pb.ModelDynamicBatching() if "dynamic_batching" in found else None,
                )
            )

        return await self._guarded(context, config)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        return await self._guarded(context, lambda: self._infer(request, context))

    # --- the work ----------------------------------------------------------------------------------

    async def _server_metadata(self, context: Any) -> pb.ServerMetadataResponse:
        self._caller(context)
        return pb.ServerMetadataResponse(
            name=self.server_name, version=self.routes.server_version, extensions=list(EXTENSIONS)
        )

    async def _infer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        principal = self._caller(context)
        routes = self.routes
        metadata = _metadata(context)
        request_id = request.id or codecs.request_id(metadata) or new_request_id()
        pipeline, arm = routes.pick(request.model_name, request.model_version or None, request_id, metadata)
        raw = list(request.raw_input_contents)
        if raw and len(raw) != len(request.inputs):
            raise BadRequest(f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs")
        given = [
            Given(
                t.name,
                t.datatype,
                tuple(t.shape),
                None if raw else _contents(t),
                raw[index] if raw else None,
                f"raw_input_contents[{index}]",
            )
            for index, t in enumerate(request.inputs)
        ]
        signature = routes.stage_model(pipeline, request.model_name).signature
        decode = routes.decode_records
        inputs, _ = decode_inputs(given, signature, routes.max_rows) if decode is None else decode(given)
        known = {spec.name for spec in signature.outputs}
        for index, out in enumerate(request.outputs):
            if out.name not in known:
                raise BadRequest(f"outputs[{index}]: the model has no output {out.name!r}")
        remaining = context.time_remaining()
        info = RequestInfo(
            request_id,
            remaining if remaining is not None else None,
            routing_key=codecs.routing_key(metadata),
            principal=principal,
        )
        payload = inputs if decode is not None else routes.payload(pipeline, inputs)
        try:
            prediction, arm = await routes.endpoints.answer(payload, info, pipeline, arm, model=request.model_name)
        except ValidationFailed as exc:
            raise (errors_at(exc, [t.name for t in given]) if decode is not None else exc) from None
        names = [out.name for out in request.outputs] or list(prediction.outputs)
        response = pb.ModelInferResponse(
            model_name=request.model_name, model_version=prediction.model_version, id=request.id
        )
        response.parameters["request_id"].string_param = prediction.request_id
        response.parameters["served_by"].string_param = prediction.served_by
        response.parameters["degraded"].bool_param = prediction.degraded
        response.parameters["route"].string_param = arm.value
        for name in names:
            array = prediction.outputs[name]
            datatype = datatype_of(array.dtype)
            response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
            response.raw_output_contents.append(np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes())
        return response

    def _caller(self, context: Any) -> str | None:
        caller = self.routes.credentials.caller(_metadata(context))
        return caller.name if caller is not None else None

    async def _guarded(self, context: Any, work: Callable[[], Awaitable[T]]) -> T:
        """``work()``'s answer, or the call aborted with the status its error maps to."""
        try:
            return await work()
        except ValidationFailed as exc:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "; ".join(f"{e.path}: {e.message}" for e in exc.errors)
            )
        except BallastError as exc:
            code = CODES.get(exc.status, grpc.StatusCode.INTERNAL)
            if isinstance(exc, Overloaded) or exc.status == 503:
                retry = exc.retry_after_header if isinstance(exc, Overloaded) else 1
                context.set_trailing_metadata((("retry-after", str(retry)),))
            await context.abort(code, str(exc) if exc.status < 500 else exc.public_message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unhandled error in a gRPC call")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise RuntimeError("the call was aborted")  # context.abort raises; never reached


def _metadata(context: Any) -> list[tuple[bytes, bytes]]:
    """The call's metadata as the HTTP layer's headers (lower-case names, bytes)."""
    return [
        (key.lower().encode("latin-1"), value if isinstance(value, bytes) else value.encode("latin-1"))
        for key, value in (context.invocation_metadata() or ())
    ]


def _contents(tensor: Any) -> list[Any] | None:
    """A tensor's elements from its typed contents (``None`` when it has none of its datatype's)."""
    field = CONTENTS.get(tensor.datatype)
    if field is None or not tensor.HasField("contents"):
        return None
    return list(getattr(tensor.contents, field))


async def serve(routes: OipRoutes, server_name: str, port: int) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """The gRPC server on ``port`` (all interfaces), started; its health servicer says SERVING."""
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(routes, server_name), server)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    if server.add_insecure_port(f"[::]:{port}") == 0:
        raise OSError(f"gRPC could not bind port {port}")
    await server.start()
    for name in ("", SERVICE):
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, checker

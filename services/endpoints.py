"""A declared service's prediction routes: the handlers the front door calls, and what the documents
say about them (schemas and examples derived from the declaration and the loaded models).

Each request goes to the deployment the service's traffic picks for its routing key (production, or
a rollout's candidate: runtime/registry/lifecycle.py); its outcome is counted for the rollout's gates,
and while a candidate is in its shadow phase, it answers a copy after production did. Answers, by kind
of request (see services/declaration.py)::

    records, one     {...the row's answer, request_id, served_by, degraded, model, route}
    records, batch   {"results": [...one per record], request_id, served_by, degraded, model}
    tensors          {"results": [...one per row], ...provenance}
    signature        {"outputs": {name: tensor}, ...provenance}, or the first output as .npy with
                     provenance in X-Served-By, X-Degraded, X-Model-Name, X-Model-Version
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic_settings import BaseSettings

from runtime import (
    BadRequest,
    BallastError,
    FieldError,
    Layer,
    Overloaded,
    Pipeline,
    Prediction,
    RecordSchema,
    Rule,
    ValidationFailed,
)
from runtime.core.codes import Arm

from .declaration import Declaration, signature_row_schema, tensor_fields
from .http.openapi import RouteDoc, inline
from .http.routes import NpyResponse, RequestInfo, Route


class ModelVersion(BaseModel):
    name: str
    version: str


class Provenance(BaseModel):
    """What every answer says about who produced it."""

    request_id: str
    served_by: str = Field(description="the chain stage that answered")
    degraded: bool = Field(description="true when the primary model did not answer")
    model: ModelVersion
    route: Literal["production", "canary"] = Field(
        description="production, or the candidate version of a rollout in progress"
    )


PROVENANCE_SCHEMA = inline(Provenance.model_json_schema())
EXAMPLE_ID = "3f2a9c1b7d4e8a60"


def provenance(prediction: Prediction, arm: Arm) -> dict[str, Any]:
    return {
        "request_id": prediction.request_id,
        "served_by": prediction.served_by,
        "degraded": prediction.degraded,
        "model": {"name": prediction.model_name, "version": prediction.model_version},
        "route": arm,
    }


class Traffic(Protocol):
    """Where requests go and what is told of them (``runtime.registry.Lifecycle``)."""

    def pick(self, key: str) -> tuple[Pipeline, Arm]: ...

    def find(self, version: str) -> tuple[Pipeline, Arm] | None:
        """The pipeline of ``version`` when it is deployed here (production, or a rollout's candidate)."""
        ...

    @property
    def comparing(self) -> bool:
        """A rollout is gathering evidence: every answer must come from a model, none from a cache."""
        ...

    def answered(self, arm: Arm, failed: bool, seconds: float) -> None: ...

    def shadow(self, answer: Prediction) -> None: ...


class Endpoints:
    """The routes of ``declaration``, each answering through the deployment ``traffic()`` picks."""

    def __init__(
        self,
        declaration: Declaration,
        traffic: Callable[[], Traffic],
        settings: BaseSettings | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self.declaration = declaration
        self.traffic = traffic
        self.guard = guard
        """Called before a request is answered; raises to refuse it (the audit trail failing closed)."""
        self.settings = settings
        d = declaration
        self.routes: list[Route] = []
        if d.kind == "records":
            self.routes.append(Route("POST", d.route, self.one))
            if d.batch_route is not None:
                self.routes.append(Route("POST", d.batch_route, self.batch))
        elif d.kind == "tensors":
            self.routes.append(Route("POST", d.route, self.tensors))
        else:
            self.routes.append(Route("POST", d.route, self.signature, npy=True))

    # --- handlers ------------------------------------------------------------------------------

    async def answer(
        self,
        payload: Any,
        info: RequestInfo,
        pipeline: Pipeline | None = None,
        arm: Arm = Arm.PRODUCTION,
        model: str | None = None,
    ) -> tuple[Prediction, Arm]:
        """``payload`` answered by the deployment picked for the request (or ``pipeline``), its
        outcome counted for a rollout's gates, and mirrored to a shadow. ``model``: a fallback model
        asked for by name (the chain begins with it; such an answer says nothing about a rollout's
        candidate, so it is neither counted nor mirrored)."""
        if self.guard is not None:
            self.guard()
        traffic = self.traffic()
        if pipeline is None:
            pipeline, arm = traffic.pick(info.routing_key or info.request_id)
        direct = model is not None and model != pipeline.chain.primary.name
        started = time.monotonic()
        try:
            prediction = await pipeline.predict(
                payload,
                request_id=info.request_id,
                timeout_s=info.timeout_s,
                cache=not (info.no_cache or traffic.comparing),
                route=arm.value,
                principal=info.principal,
                model=model if direct else None,
            )
        except (ValidationFailed, BadRequest, Overloaded):
            raise  # the caller's request or the load, not the model
        except BallastError:
            if not direct:
                traffic.answered(arm, True, time.monotonic() - started)
            raise
        if direct:
            return prediction, arm
        traffic.answered(arm, prediction.degraded, time.monotonic() - started)
        if arm is Arm.PRODUCTION:
            traffic.shadow(prediction)
        return prediction, arm

    async def one(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        if not isinstance(payload, dict):
            hint = f"; use {self.declaration.batch_route} for several" if self.declaration.batch_route else ""
            raise BadRequest(f"expected one record object{hint}")
        prediction, arm = await self.answer(payload, info)
        [row] = self.declaration.answer_rows(prediction.outputs, self.settings)
        return {**row, **provenance(prediction, arm)}

    async def batch(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        field = self.declaration.batch_field
        if not isinstance(payload, dict):
            raise BadRequest(f'expected {{"{field}": [ ... ]}}')
        errors = [FieldError(k, Rule.UNKNOWN_FIELD, f"unknown field {k!r}") for k in payload if k != field]
        if field not in payload:
            errors.append(FieldError(field, Rule.REQUIRED, f"missing array of {field}"))
        elif not isinstance(payload[field], list):
            kind = type(payload[field]).__name__
            errors.append(FieldError(field, Rule.TYPE, f"expected an array of {field}", f"<{kind}>"))
        if errors:
            raise ValidationFailed(errors, Layer.SCHEMA)
        try:
            prediction, arm = await self.answer(payload[field], info)
        except ValidationFailed as exc:
            raise exc.under(field) from None
        rows = self.declaration.answer_rows(prediction.outputs, self.settings)
        return {"results": rows, **provenance(prediction, arm)}

    async def tensors(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise BadRequest(f"expected {{{', '.join(repr(n) for n in self._tensor_names())}: [ ... ]}}")
        prediction, arm = await self.answer(payload, info)
        rows = self.declaration.answer_rows(prediction.outputs, self.settings)
        return {"results": rows, **provenance(prediction, arm)}

    async def signature(self, payload: Any, info: RequestInfo) -> dict[str, Any] | NpyResponse:
        pipeline, arm = self.traffic().pick(info.routing_key or info.request_id)
        inputs = pipeline.chain.primary.model.signature.inputs
        if isinstance(payload, np.ndarray):  # a binary body holds the model's only input
            if len(inputs) != 1:
                raise BadRequest(f"the model takes {len(inputs)} inputs; send JSON {{name: array}}")
            payload = {inputs[0].name: payload}
        prediction, arm = await self.answer(payload, info, pipeline, arm)
        if info.wants_npy:
            return NpyResponse(
                prediction.outputs[pipeline.chain.output_names[0]],
                {
                    "x-served-by": prediction.served_by,
                    "x-degraded": str(prediction.degraded).lower(),
                    "x-model-name": prediction.model_name,
                    "x-model-version": prediction.model_version,
                    "x-route": arm.value,
                },
            )
        return {"outputs": prediction.outputs, **provenance(prediction, arm)}

    def _tensor_names(self) -> list[str]:
        assert self.declaration.request is not None
        return list(tensor_fields(self.declaration.request))

    # --- what the documents say ------------------------------------------------------------------

    def examples(self, pipeline: Pipeline) -> list[Any]:
        """Payloads the pipeline checks at start-up: each route's example (a batch's records are
        the single route's)."""
        return [self.declaration.request_example(pipeline.chain.primary.model.signature, _learned(pipeline))]

    def docs(self, pipeline: Pipeline) -> list[RouteDoc]:
        """The routes' documents, from the declaration and ``pipeline`` (a started deployment: its
        models' signatures and its answer to the example)."""
        d = self.declaration
        primary = pipeline.chain.primary.model
        learned = _learned(pipeline)
        example = d.request_example(primary.signature, learned)
        outputs = pipeline.example_outputs[0] if pipeline.example_outputs else None
        said = {"request_id": EXAMPLE_ID, "served_by": primary.name, "degraded": False}
        said |= {"model": {"name": primary.name, "version": primary.version}, "route": Arm.PRODUCTION.value}
        rows = d.answer_rows(outputs, self.settings) if outputs is not None and d.kind != "signature" else []
        row_schema = self._row_schema(pipeline)
        max_rows = pipeline.validator.schema.max_rows  # type: ignore[attr-defined]
        docs: list[RouteDoc] = []
        if d.kind == "records":
            request_schema = _record_schema(pipeline)
            docs.append(
                RouteDoc(
                    self.routes[0],
                    _name(d.route),
                    f"{d.name}: one record",
                    request_schema,
                    _merge(row_schema, PROVENANCE_SCHEMA),
                    example,
                    {**rows[0], **said} if rows else None,
                    _errors(pipeline),
                )
            )
            if d.batch_route is not None:
                docs.append(
                    RouteDoc(
                        self.routes[1],
                        _name(d.batch_route),
                        f"{d.name}: up to {max_rows} records",
                        _batch_schema(d.batch_field, pipeline, max_rows),
                        _results_schema(row_schema),
                        d.batch_example(primary.signature, learned),
                        {"results": rows, **said} if rows else None,
                        _errors(pipeline),
                    )
                )
        elif d.kind == "tensors":
            assert d.request is not None
            docs.append(
                RouteDoc(
                    self.routes[0],
                    _name(d.route),
                    f"{d.name}: up to {max_rows} rows",
                    _tensor_request_schema(d.request, max_rows),
                    _results_schema(row_schema),
                    example,
                    {"results": rows, **said} if rows else None,
                    _errors(pipeline),
                )
            )
        else:
            answer = {"outputs": {k: v.tolist() for k, v in outputs.items()}, **said} if outputs else None
            docs.append(
                RouteDoc(
                    self.routes[0],
                    _name(d.route),
                    f"{d.name}: named input tensors, rows first (or one application/x-npy tensor)",
                    _signature_request_schema(pipeline, max_rows),
                    _merge(
                        {
                            "type": "object",
                            "required": ["outputs"],
                            "properties": {
                                "outputs": {
                                    "type": "object",
                                    "properties": {
                                        s.name: {"type": "array", "items": signature_row_schema(s)}
                                        for s in pipeline.chain.outputs
                                    },
                                }
                            },
                        },
                        PROVENANCE_SCHEMA,
                    ),
                    example,
                    answer,
                    _errors(pipeline),
                )
            )
        return docs

    def _row_schema(self, pipeline: Pipeline) -> dict[str, Any]:
        answer_type = self.declaration.answer_type()
        if answer_type is not None:
            return inline(answer_type.model_json_schema())
        return {
            "type": "object",
            "required": list(pipeline.chain.output_names),
            "properties": {spec.name: signature_row_schema(spec) for spec in pipeline.chain.outputs},
        }


# --- schema helpers ---------------------------------------------------------------------------------


def _name(path: str) -> str:
    return path.strip("/").replace("/", "_").replace("-", "_")


def _errors(pipeline: Pipeline) -> tuple[int, ...]:
    """Without a rule stage, a request no stage could answer in time is a 504."""
    return (400, 413, 415, 422, 503) if pipeline.chain.rules is not None else (400, 413, 415, 422, 503, 504)


def _learned(pipeline: Pipeline) -> dict[str, Any]:
    schema = pipeline.validator.schema
    if not isinstance(schema, RecordSchema):
        return {}
    return {c.name: c.bounds for c in schema.columns if c.bounds is not None}


def _record_schema(pipeline: Pipeline) -> dict[str, Any]:
    schema = pipeline.validator.schema
    assert isinstance(schema, RecordSchema)
    return inline(schema.strict_model.model_json_schema())


def _batch_schema(field: str, pipeline: Pipeline, max_rows: int) -> dict[str, Any]:
    schema = pipeline.validator.schema
    assert isinstance(schema, RecordSchema)
    records = Annotated[list[schema.strict_model], Field(min_length=1, max_length=max_rows)]  # type: ignore[name-defined]
    fields: dict[str, Any] = {field: (records, ...)}
    batch = create_model("Batch", __config__=ConfigDict(extra="forbid"), **fields)
    return inline(batch.model_json_schema())


def _tensor_request_schema(request: type[BaseModel], max_rows: int) -> dict[str, Any]:
    schema = inline(request.model_json_schema())
    schema["additionalProperties"] = False
    for prop in schema.get("properties", {}).values():
        prop["maxItems"] = max_rows
    return schema


def _signature_request_schema(pipeline: Pipeline, max_rows: int) -> dict[str, Any]:
    inputs = pipeline.chain.primary.model.signature.inputs
    return {
        "type": "object",
        "required": [s.name for s in inputs],
        "additionalProperties": False,
        "properties": {
            s.name: {"type": "array", "minItems": 1, "maxItems": max_rows, "items": signature_row_schema(s)}
            for s in inputs
        },
    }


def _merge(row: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [*row.get("required", []), *extra.get("required", [])],
        "properties": {**row.get("properties", {}), **extra.get("properties", {})},
    }


def _results_schema(row: dict[str, Any]) -> dict[str, Any]:
    return _merge(
        {"type": "object", "required": ["results"], "properties": {"results": {"type": "array", "items": row}}},
        PROVENANCE_SCHEMA,
    )

"""A Ballast service, declared once: its models (store tags, primary first), its request type, the
business checks every row must pass, the rule stage that answers when no model can, how answers
read, and per-stage settings. Validation, JSON Schema, examples and the routes derive from it.

Three kinds of request, told apart by the request type:

=============  ==============================================  ===================================
kind           request type                                    routes (defaults)
=============  ==============================================  ===================================
records        a pydantic model of ``float``/``int``/``bool``  ``POST /predict``: one record;
               /``Literal`` fields: one row per record          ``POST /predict_batch``:
                                                               ``{"records": [...]}``
tensors        a pydantic model of :class:`Tensor` fields      ``POST /predict``: ``{field: rows}``
signature      none: the primary model's ONNX inputs           ``POST /predict``: ``{input: rows}``
                                                               or one ``application/x-npy`` tensor
=============  ==============================================  ===================================

Names come from the ONNX signature or from the declaration, never from a convention: a records
request fills the model's one input (columns in field order), a tensor field fills the input of its
own name (or the model's only input), and answers carry the model's outputs by their names unless
the service's ``answer`` function says otherwise. This module knows neither HTTP nor BentoML.
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel
from pydantic_core import core_schema
from pydantic_settings import BaseSettings

from runtime import (
    Bounds,
    BusinessRule,
    ModelSignature,
    RecordSchema,
    RuleStage,
    TensorRange,
    TensorSchema,
    TensorSpec,
    ValidatedRequest,
    columns_of,
)
from runtime.audit.rows import MAX_LISTED
from runtime.core.record import RequestRecord
from runtime.core.settings import STAGE_FIELDS
from runtime.engine.validation import Schema

Kind = Literal["records", "tensors", "signature"]
Outputs = Mapping[str, np.ndarray]


# --- parts of a declaration ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """A model stage: a model-store tag and the settings it needs beyond the defaults (see
    :class:`runtime.StageSettings`; ``BALLAST_STAGES`` overrides both)."""

    tag: str
    max_batch_size: int | None = None
    max_batch_wait_ms: float | None = None
    max_batches_in_flight: int | None = None
    max_queue_rows: int | None = None
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    intra_op_spinning: bool | None = None

    @property
    def model(self) -> str:
        """The model's name (the tag without its version)."""
        return self.tag.split(":", 1)[0]

    def overrides(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in STAGE_FIELDS if getattr(self, name) is not None}


@dataclass(frozen=True)
class Tensor:
    """A tensor field of a request type: ``images: Annotated[np.ndarray, Tensor((8, 8), ge=0, le=16)]``.

    ``shape`` is one row's shape (the request adds the rows dimension in front). ``reshape`` lays each
    row out as the model input's row shape (``(64,)``: the 8 x 8 image as 64 values, row-major); the
    request itself must have exactly ``shape``."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    ge: float | None = None
    le: float | None = None
    reshape: tuple[int, ...] | None = None
    description: str = ""

    def spec(self, name: str) -> TensorSpec:
        return TensorSpec(name, np.dtype(self.dtype), (None, *self.shape))

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.any_schema()  # validated by runtime.TensorSchema, never by pydantic

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        rows: dict[str, Any] = {"type": "array", "minItems": 1, "items": self.row_schema()}
        if self.description:
            rows["description"] = self.description
        return rows

    def row_schema(self) -> dict[str, Any]:
        kind = np.dtype(self.dtype).kind
        item: dict[str, Any] = {"type": "integer" if kind in "iu" else "boolean" if kind == "b" else "number"}
        if self.ge is not None:
            item["minimum"] = self.ge
        if self.le is not None:
            item["maximum"] = self.le
        for size in reversed(self.shape):
            item = {"type": "array", "minItems": size, "maxItems": size, "items": item}
        return item


def tensor_fields(model: type[BaseModel]) -> dict[str, Tensor]:
    return {
        name: marker
        for name, info in model.model_fields.items()
        for marker in info.metadata
        if isinstance(marker, Tensor)
    }


def signature_row_schema(spec: TensorSpec) -> dict[str, Any]:
    """JSON Schema of one row of a tensor of the model's signature."""
    kind = spec.dtype.kind
    item: dict[str, Any] = {"type": "integer" if kind in "iu" else "boolean" if kind == "b" else "number"}
    for size in reversed(spec.row_shape):
        item = {"type": "array", "items": item, **({"minItems": size, "maxItems": size} if size is not None else {})}
    return item


@dataclass(frozen=True)
class Compliance:
    """A check the audit trail records with each answer: a named predicate over one row's request
    and its answer (``amount_over_reporting_threshold``); each row of the trail lists the rows of
    the request for which it held."""

    name: str
    check: Callable[[Any, Mapping[str, Any]], bool]
    description: str = ""


# --- the declaration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Declaration:
    """Everything a service says about itself (see :func:`services.ballast_service`)."""

    name: str
    models: tuple[Stage, ...]
    request: type[BaseModel] | None = None
    answer: Callable[..., Sequence[BaseModel]] | None = None
    checks: tuple[BusinessRule, ...] = ()
    rules: Callable[[list[Any]], Outputs] | None = None
    route: str = "/predict"
    batch_route: str | None = None
    batch_field: str = "records"
    settings: type[BaseSettings] | None = None
    learn_ranges: bool = False
    description: str = ""
    examples: tuple[Any, ...] = field(default=(), compare=False)
    compliance: tuple[Compliance, ...] = ()
    rule_reasons: Callable[[Any], Sequence[str]] | None = None
    """Which of the rule stage's rules fired for a row (for the audit trail)."""
    _answered: list[tuple[Outputs, BaseSettings | None, list[dict[str, Any]]]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    """The last outputs answered, with their answers: the audit row and the response read them one
    after the other, so the answer function runs once per request."""

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError(f"service {self.name!r} declares no model")
        if not self.route.startswith("/") or (self.batch_route is not None and not self.batch_route.startswith("/")):
            raise ValueError(f"routes start with '/', got {self.route!r} and {self.batch_route!r}")
        if self.kind == "records":
            columns_of(self.request)  # type: ignore[arg-type]  # raises on a field it cannot encode
        elif self.batch_route is not None:
            raise ValueError(f"{self.name}: a batch route needs a records request type (one row per record)")
        elif self.learn_ranges:
            raise ValueError(f"{self.name}: learned ranges apply to records requests")
        if self.kind == "signature" and self.rules is not None:
            raise ValueError(f"{self.name}: a rule stage needs a declared request type to read")
        if self.answer is not None and self.kind == "signature":
            raise ValueError(f"{self.name}: an answer function needs a declared request type")
        if self.compliance and self.kind != "records":
            raise ValueError(f"{self.name}: compliance checks read records: declare a records request type")
        if len({c.name for c in self.compliance}) != len(self.compliance):
            raise ValueError(f"{self.name}: two compliance checks share a name")

    @property
    def kind(self) -> Kind:
        if self.request is None:
            return "signature"
        tensors = tensor_fields(self.request)
        if not tensors:
            return "records"
        plain = set(self.request.model_fields) - set(tensors)
        if plain:
            raise TypeError(f"{self.request.__name__}: mix of tensor and record fields ({sorted(plain)})")
        return "tensors"

    @property
    def primary(self) -> Stage:
        return self.models[0]

    # --- validation --------------------------------------------------------------------------

    def schema(self, signature: ModelSignature, max_rows: int, learned: Mapping[str, Bounds] | None = None) -> Schema:
        """Layers 1 and 2 for this service's requests, checked against the primary's signature."""
        if self.kind == "signature":
            return TensorSchema(signature, max_rows=max_rows)
        assert self.request is not None
        if self.kind == "records":
            if len(signature.inputs) != 1:
                names = [s.name for s in signature.inputs]
                raise TypeError(f"{self.name}: a records request fills one model input; the model takes {names}")
            records = RecordSchema(
                self.request, input_name=signature.inputs[0].name, max_rows=max_rows, learned=learned
            )
            records.check_signature(signature)
            return records
        tensors = tensor_fields(self.request)
        feeds = {}
        for name, tensor in tensors.items():
            target = _input_for(name, signature, len(tensors))
            row_shape = tensor.reshape or tensor.shape
            if target.dtype != np.dtype(tensor.dtype) or not target.row_shape_matches(row_shape):
                raise TypeError(
                    f"{self.name}: {name} rows are {tensor.dtype}{list(row_shape)} but the model's input "
                    f"{target.name!r} is {target.describe()}"
                )
            if target.name != name or tensor.reshape:
                feeds[name] = (target.name, row_shape)
        ranges = {
            name: TensorRange(-math.inf if t.ge is None else t.ge, math.inf if t.le is None else t.le)
            for name, t in tensors.items()
            if t.ge is not None or t.le is not None
        }
        declared = ModelSignature(tuple(t.spec(n) for n, t in tensors.items()), ())
        return TensorSchema(declared, max_rows=max_rows, ranges=ranges, feeds=feeds)

    @functools.cached_property
    def rule_stage_name(self) -> str | None:
        return getattr(self.rules, "__name__", "rules").replace("_", "-") if self.rules is not None else None

    def rule_stage(self, version: str = "1") -> RuleStage | None:
        """The declared rule function as the chain's last stage (it reads the typed records, or the
        validated rows of a tensor request)."""
        rules, name = self.rules, self.rule_stage_name
        if rules is None or name is None:
            return None

        def answer(request: ValidatedRequest) -> Outputs:
            rows = request.records if request.records is not None else [request.row(i) for i in range(request.rows)]
            return rules(rows)

        return RuleStage(name, version, answer)

    # --- answers --------------------------------------------------------------------------------

    def answer_rows(self, outputs: Outputs, settings: BaseSettings | None) -> list[dict[str, Any]]:
        """One JSON object per row: the ``answer`` function's, or every output's row by name (the
        same list for the same ``outputs`` asked twice in a row: treat it as read-only)."""
        if self._answered:
            last, last_settings, rows = self._answered[0]
            if last is outputs and last_settings is settings:
                return rows
        if self.answer is not None:
            answered = self.answer(outputs, settings) if self.settings is not None else self.answer(outputs)
            rows = [row.model_dump(mode="json") for row in answered]
        else:
            names = list(outputs)
            columns = [outputs[name].tolist() for name in names]
            rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        self._answered[:] = [(outputs, settings, rows)]
        return rows

    def audit_facts(self, record: RequestRecord, settings: BaseSettings | None) -> dict[str, Any]:
        """What the service adds to an answer's audit row: its answers (when at most ``MAX_LISTED``
        rows), the compliance checks that held (check -> row indexes), and the rules that fired
        when the rule stage answered (one list per row)."""
        facts: dict[str, Any] = {}
        if record.outputs is None or record.rows > MAX_LISTED:
            return facts
        answers = self.answer_rows(record.outputs, settings)
        facts["answers"] = answers
        records = record.records
        if records is None:
            return facts
        if self.compliance:
            held: dict[str, list[int]] = {}
            for i, (r, a) in enumerate(zip(records, answers, strict=True)):  # one pass: this is per request
                for c in self.compliance:
                    if c.check(r, a):
                        held.setdefault(c.name, []).append(i)
            facts["checks"] = held
        if self.rule_reasons is not None and record.served_by == self.rule_stage_name:
            facts["rules"] = [list(self.rule_reasons(r)) for r in records]
        return facts

    def answer_type(self) -> type[BaseModel] | None:
        """The row type the ``answer`` function returns, from its annotation (for the schema)."""
        if self.answer is None:
            return None
        returned = inspect.get_annotations(self.answer).get("return")
        if isinstance(returned, str):  # postponed annotations: evaluate the return type alone
            returned = eval(returned, getattr(self.answer, "__globals__", {}))
        args = typing.get_args(returned)
        found = args[0] if args else returned
        if not (inspect.isclass(found) and issubclass(found, BaseModel)):
            raise TypeError(f"{self.name}: annotate the answer function as returning list[YourModel], got {returned!r}")
        return found

    def check_answer(self) -> None:
        if self.answer is not None:
            self.answer_type()
            wants = len(inspect.signature(self.answer).parameters)
            if wants != (2 if self.settings is not None else 1):
                raise TypeError(
                    f"{self.name}: the answer function takes the outputs"
                    + (" and the service's settings" if self.settings is not None else "")
                    + f", but {self.answer.__name__} takes {wants} argument(s)"
                )

    # --- examples ---------------------------------------------------------------------------------

    def request_example(
        self, signature: ModelSignature | None = None, learned: Mapping[str, Bounds] | None = None
    ) -> Any:
        """A request for the main route: the request type's first declared example, else one built
        from its fields (or from the signature), inside every declared or ``learned`` bound."""
        if self.examples:
            return self.examples[0]
        if self.request is not None:
            extra = self.request.model_config.get("json_schema_extra")
            examples = extra.get("examples") if isinstance(extra, dict) else None
            if isinstance(examples, list) and examples:
                return examples[0]
        if self.kind == "records":
            assert self.request is not None
            bounds = learned or {}
            return {
                c.name: _example_value(
                    c.kind,
                    c.low if c.low is not None or c.name not in bounds else bounds[c.name].low,
                    c.high if c.high is not None or c.name not in bounds else bounds[c.name].high,
                    c.categories,
                )
                for c in columns_of(self.request)
            }
        if self.kind == "tensors":
            assert self.request is not None
            return {name: [_example_tensor(t)] for name, t in tensor_fields(self.request).items()}
        assert signature is not None, "a signature service's example needs the model's signature"
        return {
            spec.name: np.zeros((1, *(d or 1 for d in spec.row_shape)), dtype=spec.dtype).tolist()
            for spec in signature.inputs
        }

    def batch_example(
        self, signature: ModelSignature | None = None, learned: Mapping[str, Bounds] | None = None
    ) -> dict[str, Any]:
        return {self.batch_field: [self.request_example(signature, learned)]}


def _input_for(name: str, signature: ModelSignature, fields: int) -> TensorSpec:
    for spec in signature.inputs:
        if spec.name == name:
            return spec
    if fields == 1 and len(signature.inputs) == 1:
        return signature.inputs[0]
    raise TypeError(f"tensor field {name!r} matches none of the model's inputs {[s.name for s in signature.inputs]}")


def _example_value(kind: str, low: float | None, high: float | None, categories: Sequence[str]) -> Any:
    if kind == "boolean":
        return False
    if kind == "category":
        return categories[0]
    lo = 0.0 if low is None else low
    hi = lo + 2.0 if high is None else high
    middle = (lo + hi) / 2 if low is not None or high is None else min(hi, 1.0)
    return round(middle) if kind == "integer" else round(middle, 3)


def _example_tensor(tensor: Tensor) -> Any:
    low = 0.0 if tensor.ge is None else tensor.ge
    value = low if tensor.le is None else (low + tensor.le) / 2
    return np.full(tensor.shape, value, dtype=tensor.dtype).tolist()

"""What a declaration derives: the kind of request, validation against the model's signature, the
rule stage, answers and examples; and the mistakes it refuses before anything is served."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
import pytest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings

from runtime import Bounds, OnnxModel, RecordSchema, TensorSchema, ValidationFailed, Validator
from services.declaration import Declaration, Stage, Tensor


class Point(BaseModel):
    a: float = Field(ge=0, le=10)
    b: int = Field(ge=1)
    c: Literal["x", "y"]


class Reply(BaseModel):
    score: float


class Pixels(BaseModel):
    image: Annotated[np.ndarray, Tensor((2, 2), ge=0, le=1, reshape=(4,))]


def declare(**overrides: object) -> Declaration:
    values: dict[str, object] = {"name": "t", "models": (Stage("m:latest"),), "request": Point}
    values.update(overrides)
    return Declaration(**values)  # type: ignore[arg-type]


def test_the_request_type_says_the_kind() -> None:
    assert declare().kind == "records"
    assert declare(request=Pixels).kind == "tensors"
    assert declare(request=None).kind == "signature"

    class Mixed(BaseModel):
        a: float
        image: Annotated[np.ndarray, Tensor((2,))]

    with pytest.raises(TypeError, match="mix of tensor and record fields"):
        _ = declare(request=Mixed).kind


def test_records_fill_the_models_one_input_and_must_fit_it(load_model: Callable[..., OnnxModel]) -> None:
    schema = declare().schema(load_model("classifier").signature, max_rows=4)  # float32[N, 3]
    assert isinstance(schema, RecordSchema)
    request = Validator(schema).validate({"a": 1.5, "b": 2, "c": "y"})
    np.testing.assert_array_equal(request.inputs["x"], [[1.5, 2, 1]])
    with pytest.raises(TypeError, match=r"Point encodes float32\[N, 3\] .* the model's input 'x' is float32\[N, 4\]"):
        declare().schema(load_model("affine").signature, max_rows=4)
    with pytest.raises(TypeError, match="fills one model input; the model takes"):
        declare().schema(load_model("gather").signature, max_rows=4)


def test_tensor_fields_feed_the_models_input_in_its_layout(load_model: Callable[..., OnnxModel]) -> None:
    schema = declare(request=Pixels).schema(load_model("affine").signature, max_rows=4)
    assert isinstance(schema, TensorSchema)
    request = Validator(schema).validate({"image": [[[0, 0.5], [1, 0.25]]]})
    np.testing.assert_array_equal(request.inputs["x"], [[0, 0.5, 1, 0.25]])
    with pytest.raises(ValidationFailed):
        Validator(schema).validate({"image": [[[0, 2], [1, 0]]]})  # out of the declared range

    class Wrong(BaseModel):
        image: Annotated[np.ndarray, Tensor((3,))]

    with pytest.raises(TypeError, match=r"image rows are float32\[3\] but the model's input 'x' is float32\[N, 4\]"):
        declare(request=Wrong).schema(load_model("affine").signature, max_rows=4)


def test_the_rule_stage_reads_the_typed_records() -> None:
    seen: list[list[Point]] = []

    def fallback_rules(points: list[Point]) -> dict[str, np.ndarray]:
        seen.append(points)
        return {"y": np.zeros((len(points), 1), np.float32)}

    stage = declare(rules=fallback_rules).rule_stage()
    assert stage is not None
    assert stage.name == "fallback-rules"
    schema = RecordSchema(Point, input_name="x", max_rows=2)
    stage.answer(Validator(schema).validate([{"a": 1.0, "b": 1, "c": "x"}]))
    assert isinstance(seen[0][0], Point)


def test_answers_are_the_outputs_by_name_unless_an_answer_function_says_otherwise() -> None:
    outputs = {"label": np.array([1, 0]), "probabilities": np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)}
    assert declare().answer_rows(outputs, None) == [
        {"label": 1, "probabilities": [0.25, 0.75]},
        {"label": 0, "probabilities": [0.5, 0.5]},
    ]

    class Threshold(BaseSettings):
        cut: float = 0.6

    def reply(outputs: dict[str, np.ndarray], settings: Threshold) -> list[Reply]:
        return [Reply(score=float(p > settings.cut)) for p in outputs["probabilities"][:, 1]]

    declared = declare(answer=reply, settings=Threshold)
    declared.check_answer()
    assert declared.answer_rows(outputs, Threshold()) == [{"score": 1.0}, {"score": 0.0}]
    assert declared.answer_type() is Reply

    def unsettled(outputs: dict[str, np.ndarray]) -> list[Reply]:
        return []

    with pytest.raises(TypeError, match="takes the outputs and the service's settings, but unsettled takes 1"):
        declare(answer=unsettled, settings=Threshold).check_answer()
    with pytest.raises(TypeError, match=r"annotate the answer function as returning list\[YourModel\]"):
        declare(answer=lambda outputs: []).check_answer()


def test_examples_are_declared_or_built_inside_every_bound() -> None:
    example = declare().request_example()
    assert example == {"a": 5.0, "b": 2, "c": "x"}
    Validator(RecordSchema(Point, input_name="x", max_rows=1)).validate(example)
    learned = declare().request_example(learned={"b": Bounds(10, 21)})
    assert learned["b"] == 11  # the declared lower bound (1) stays; the learned upper one (21) fills in
    assert declare(examples=({"a": 1.0, "b": 3, "c": "y"},)).request_example()["b"] == 3
    assert declare(request=Pixels).request_example() == {"image": [[[0.5, 0.5], [0.5, 0.5]]]}


def test_mistakes_are_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="declares no model"):
        declare(models=())
    with pytest.raises(ValueError, match="a batch route needs a records request type"):
        declare(request=Pixels, batch_route="/p_batch")
    with pytest.raises(ValueError, match="a rule stage needs a declared request type"):
        declare(request=None, rules=lambda rows: {})
    with pytest.raises(ValueError, match="routes start with '/'"):
        declare(route="predict")


def test_a_stage_names_its_model_and_only_the_settings_it_sets() -> None:
    stage = Stage("digits-mlp-small:latest", max_batch_size=1)
    assert stage.model == "digits-mlp-small"
    assert stage.overrides() == {"max_batch_size": 1}
    assert Stage("m").overrides() == {}

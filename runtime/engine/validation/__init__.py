"""Request validation in three layers (see :mod:`.request`): records (:mod:`.records`, pydantic),
tensors (:mod:`.tensors`, numpy), learned ranges (:mod:`.ranges`), the validator (:mod:`.validator`)."""

from .ranges import DEFAULT_MARGIN, Bounds, learn_range, learned_bounds, rejections, round_outward
from .records import Column, RecordSchema, columns_of, record_values
from .request import BusinessRule, Row, Schema, ValidatedRequest, all_finite, json_value
from .tensors import TensorRange, TensorSchema
from .validator import Validator

__all__ = [
    "DEFAULT_MARGIN",
    "Bounds",
    "BusinessRule",
    "Column",
    "RecordSchema",
    "Row",
    "Schema",
    "TensorRange",
    "TensorSchema",
    "ValidatedRequest",
    "Validator",
    "all_finite",
    "columns_of",
    "json_value",
    "learn_range",
    "learned_bounds",
    "record_values",
    "rejections",
    "round_outward",
]

"""Ballast's inference runtime: validation, adaptive batching, fallback chains and metrics around
onnxruntime, with no HTTP inside. ``runtime.pipeline`` shows the request path."""

from .batching import AdaptiveBatcher, BatchResult, LatencyModel
from .chain import ChainResult, InferenceChain, ModelStage, RuleStage
from .errors import (
    BadRequest,
    BallastError,
    ChainExhausted,
    CircuitOpen,
    DeadlineExceeded,
    FieldError,
    InternalError,
    InvalidOutput,
    ModelFailed,
    Overloaded,
    StageFailure,
    StageTimeout,
    ValidationFailed,
)
from .faults import FaultInjector, InjectedFault
from .hooks import CompositeHook, Hook, Outcome, RequestRecord, current_request
from .metrics import PrometheusHook, RuntimeMetrics, default_metrics
from .pipeline import Pipeline, Prediction
from .resilience import BreakerState, CircuitBreaker
from .session import OnnxModel, SessionConfig
from .settings import Settings
from .signature import ModelSignature, TensorSpec
from .validation import (
    BusinessRule,
    Field,
    RecordSchema,
    TensorRange,
    TensorSchema,
    ValidatedRequest,
    Validator,
    learn_range,
)

__all__ = [
    "AdaptiveBatcher",
    "BadRequest",
    "BallastError",
    "BatchResult",
    "BreakerState",
    "BusinessRule",
    "ChainExhausted",
    "ChainResult",
    "CircuitBreaker",
    "CircuitOpen",
    "CompositeHook",
    "DeadlineExceeded",
    "FaultInjector",
    "Field",
    "FieldError",
    "Hook",
    "InferenceChain",
    "InjectedFault",
    "InternalError",
    "InvalidOutput",
    "LatencyModel",
    "ModelFailed",
    "ModelSignature",
    "ModelStage",
    "OnnxModel",
    "Outcome",
    "Overloaded",
    "Pipeline",
    "Prediction",
    "PrometheusHook",
    "RecordSchema",
    "RequestRecord",
    "RuleStage",
    "RuntimeMetrics",
    "SessionConfig",
    "Settings",
    "StageFailure",
    "StageTimeout",
    "TensorRange",
    "TensorSchema",
    "TensorSpec",
    "ValidatedRequest",
    "ValidationFailed",
    "Validator",
    "current_request",
    "default_metrics",
    "learn_range",
]

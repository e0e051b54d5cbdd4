"""Ballast's inference runtime: validation, adaptive batching, fallback chains, metrics and model
versions around onnxruntime, with no HTTP inside.

Layers, each importing only those below it (checked by ``make lint``)::

    registry   name -> versions -> deployments; which deployment answers
    pipeline   one deployment's request path: validate -> chain -> hooks (runtime/pipeline.py)
    engine     validation/, batching/, session.py, resilience/, chain.py, faults.py
    observe    hooks and metrics, fed by the pipeline (imports only core)
    audit      the hash-chained trail of answers, labelled feedback (audit/)
    drift      live windows of inputs and predictions against each version's reference (drift/)
    core       codes, errors, settings, signatures, the request record
"""

from .core.codes import (
    BreakerState,
    ErrorType,
    FallbackReason,
    Layer,
    Outcome,
    RefusalReason,
    Rule,
    ShedReason,
)
from .core.errors import (
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
from .core.record import Hook, RequestRecord, current_request
from .core.settings import DrillSettings, Settings, StageSettings
from .core.signature import ModelSignature, TensorSpec
from .engine.batching import AdaptiveBatcher, BatchResult, LatencyModel
from .engine.chain import ChainResult, InferenceChain, ModelStage, RuleStage
from .engine.faults import FaultInjector, InjectedFault
from .engine.resilience import CircuitBreaker
from .engine.session import ArtifactChanged, OnnxModel, SessionConfig
from .engine.validation import (
    Bounds,
    BusinessRule,
    Column,
    RecordSchema,
    TensorRange,
    TensorSchema,
    ValidatedRequest,
    Validator,
    columns_of,
    learn_range,
    learned_bounds,
    rejections,
)
from .observe.hooks import CompositeHook
from .observe.metrics import PrometheusHook, RuntimeMetrics, default_metrics
from .pipeline import Pipeline, Prediction
from .registry import PRODUCTION, Deployment, Registry, SignatureMismatch

__all__ = [
    "PRODUCTION",
    "AdaptiveBatcher",
    "ArtifactChanged",
    "BadRequest",
    "BallastError",
    "BatchResult",
    "Bounds",
    "BreakerState",
    "BusinessRule",
    "ChainExhausted",
    "ChainResult",
    "CircuitBreaker",
    "CircuitOpen",
    "Column",
    "CompositeHook",
    "DeadlineExceeded",
    "Deployment",
    "DrillSettings",
    "ErrorType",
    "FallbackReason",
    "FaultInjector",
    "FieldError",
    "Hook",
    "InferenceChain",
    "InjectedFault",
    "InternalError",
    "InvalidOutput",
    "LatencyModel",
    "Layer",
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
    "RefusalReason",
    "Registry",
    "RequestRecord",
    "Rule",
    "RuleStage",
    "RuntimeMetrics",
    "SessionConfig",
    "Settings",
    "ShedReason",
    "SignatureMismatch",
    "StageFailure",
    "StageSettings",
    "StageTimeout",
    "TensorRange",
    "TensorSchema",
    "TensorSpec",
    "ValidatedRequest",
    "ValidationFailed",
    "Validator",
    "columns_of",
    "current_request",
    "default_metrics",
    "learn_range",
    "learned_bounds",
    "rejections",
]

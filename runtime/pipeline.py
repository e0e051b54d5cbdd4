"""The whole request path, top to bottom, in one place:

    predict(payload)
      1. validate     schema -> content -> business rules       (ValidationFailed: 422)
      2. deadline     now + timeout
      3. chain        for each model stage: breaker -> batcher (admit/shed, batch, onnxruntime)
                      -> output check; then the business-rule stage
      4. hooks        exactly once, with the outcome and the request's record

:meth:`Pipeline.build` composes the parts from :class:`~runtime.settings.Settings`; nothing else
in the runtime knows the order of the steps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .batching.queue import AdaptiveBatcher
from .chain import ChainResult, InferenceChain, ModelStage, RuleStage
from .errors import BallastError, InternalError, Overloaded, ValidationFailed
from .faults import FaultInjector
from .hooks import CompositeHook, Hook, Outcome, RequestRecord, current_request
from .metrics import PrometheusHook, RuntimeMetrics, default_metrics
from .resilience.breaker import CircuitBreaker
from .session import OnnxModel
from .settings import Settings
from .validation import BusinessRule, Schema, Validator

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prediction:
    request_id: str
    outputs: dict[str, np.ndarray]
    served_by: str
    degraded: bool
    model_name: str
    model_version: str


class Pipeline:
    def __init__(
        self,
        name: str,
        validator: Validator,
        chain: InferenceChain,
        *,
        hooks: CompositeHook,
        timeout_s: float,
        warmup_runs: int = 3,
        metrics: RuntimeMetrics | None = None,
    ) -> None:
        self.name = name
        self.validator = validator
        self.chain = chain
        self.hooks = hooks
        self.timeout_s = timeout_s
        self.warmup_runs = warmup_runs
        self.metrics = metrics
        """Flushed when the pipeline closes (see runtime/metrics.py, MetricBuffer)."""
        self.ready = False

    @classmethod
    def build(
        cls,
        name: str,
        *,
        models: Sequence[OnnxModel],
        schema: Schema,
        rules: Sequence[BusinessRule] = (),
        fallback_rules: RuleStage | None = None,
        settings: Settings | None = None,
        hooks: Sequence[Hook] = (),
        metrics: RuntimeMetrics | None = None,
    ) -> Pipeline:
        """Compose a pipeline: ``models[0]`` is the primary, the rest fallbacks in order."""
        settings = settings or Settings()
        metrics = metrics or default_metrics() if settings.metrics_enabled else None
        stages = []
        for index, model in enumerate(models):
            last_model = index == len(models) - 1
            stages.append(
                ModelStage(
                    model=model,
                    batcher=AdaptiveBatcher(
                        model.run_async,
                        max_batch_size=settings.max_batch_size if model.batchable else 1,
                        max_wait_s=settings.max_batch_wait_ms / 1000,
                        max_in_flight=settings.max_batches_in_flight,
                        max_queue_rows=settings.max_queue_rows,
                        retry_after_s=settings.retry_after_s,
                        observer=metrics.batch_observer(model.name, model.version) if metrics else None,
                    ),
                    breaker=CircuitBreaker(
                        model.name,
                        failure_rate=settings.breaker_failure_rate,
                        window=settings.breaker_window,
                        min_calls=settings.breaker_min_calls,
                        recovery_s=settings.breaker_recovery_s,
                        on_change=metrics.on_breaker_change if metrics else None,
                    ),
                    reserve_s=0.0 if last_model else settings.fallback_reserve_ms / 1000,
                )
            )
        chain = InferenceChain(stages, fallback_rules, shed_policy=settings.shed_policy)
        all_hooks = CompositeHook(
            [PrometheusHook(metrics), *hooks] if metrics else hooks,
            on_hook_error=metrics.on_hook_error if metrics else None,
        )
        return cls(
            name,
            Validator(schema, rules, content_checks=settings.content_checks),
            chain,
            hooks=all_hooks,
            timeout_s=settings.request_timeout_ms / 1000,
            warmup_runs=settings.warmup_runs,
            metrics=metrics,
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Warm every model at batch sizes 1 and max, seed the batchers' latency models, and
        report ready."""
        for stage in self.chain.stages:
            sizes = sorted({1, stage.batcher.max_batch_size})
            timings = await asyncio.to_thread(stage.model.warmup, sizes, self.warmup_runs)
            for rows, seconds in timings:
                stage.batcher.latency.observe(rows, seconds)
            stage.batcher.start()
        self.ready = True

    async def close(self) -> None:
        """Stop admitting, finish admitted requests, release the models' threads."""
        self.ready = False
        for stage in self.chain.stages:
            await stage.batcher.close(drain=True)
            stage.model.close()
        if self.metrics is not None:
            self.metrics.buffer.flush()

    # --- operations (the services' admin endpoints) ------------------------------------------

    def state(self) -> dict[str, Any]:
        """Each model stage: model version, breaker state, fault injection in force."""
        return {
            "stages": [
                {
                    "name": stage.model.name,
                    "version": stage.model.version,
                    "breaker": stage.breaker.state.name.lower(),
                    "faults": stage.model.faults.describe() if stage.model.faults else None,
                }
                for stage in self.chain.stages
            ]
        }

    def reset_breakers(self) -> None:
        for stage in self.chain.stages:
            stage.breaker.reset()

    def inject_faults(self, faults: FaultInjector | None, model: str | None = None) -> None:
        """Make a model stage (by model name; the primary by default) fail or slow down as ``faults``
        says (``None``: heal it)."""
        stages = [s for s in self.chain.stages if model is None or s.model.name == model]
        if not stages:
            raise KeyError(f"no model stage named {model!r}; the chain's models are {self.model_names}")
        stages[0].model.faults = faults

    @property
    def model_names(self) -> list[str]:
        return [stage.model.name for stage in self.chain.stages]

    # --- the request path ------------------------------------------------------------------

    async def predict(
        self, payload: Any, *, request_id: str | None = None, timeout_s: float | None = None
    ) -> Prediction:
        started = time.monotonic()
        record = RequestRecord(request_id or os.urandom(8).hex(), self.name)
        token = current_request.set(record)
        outcome = Outcome.ERROR
        try:
            # a caller may ask for less time than the server allows, never more
            budget = min(timeout_s, self.timeout_s) if timeout_s else self.timeout_s
            result = await self._serve(payload, record, started + budget)
            outcome = Outcome.FALLBACK if result.degraded else Outcome.SUCCESS
            return Prediction(
                record.request_id,
                result.outputs,
                result.served_by,
                result.degraded,
                result.model_name,
                result.model_version,
            )
        except ValidationFailed as exc:
            outcome, record.error_type = Outcome.REJECTED, exc.type
            record.failed_rules = tuple(sorted({e.rule for e in exc.errors}))
            raise
        except BallastError as exc:
            rejected = exc.status < 500 or isinstance(exc, Overloaded)
            outcome, record.error_type = (Outcome.REJECTED if rejected else Outcome.ERROR), exc.type
            raise
        except asyncio.CancelledError:
            outcome = Outcome.CANCELLED
            raise
        except Exception as exc:
            record.error_type = InternalError.type
            log.exception("request %s failed", record.request_id)
            raise InternalError(f"request {record.request_id} failed") from exc
        finally:
            record.total_s = time.monotonic() - started
            current_request.reset(token)
            self.hooks.on_request(outcome, record)

    async def _serve(self, payload: Any, record: RequestRecord, deadline: float) -> ChainResult:
        started = time.perf_counter()
        try:
            request = self.validator.validate(payload)
        finally:
            record.validation_s = time.perf_counter() - started
        record.rows, record.inputs = request.rows, request.inputs
        return await self.chain.run(request, deadline, record)

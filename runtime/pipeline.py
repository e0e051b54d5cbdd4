"""The whole request path, top to bottom, in one place:

    predict(payload)
      1. validate     schema -> content -> business rules       (ValidationFailed: 422)
      2. deadline     now + timeout
      3. cache        the primary's earlier answer to the same input, if the deployment keeps one
      4. chain        for each model stage: breaker -> batcher (admit/shed, batch, onnxruntime)
                      -> output check; then the business-rule stage; a primary answer enters the cache
      5. hooks        exactly once, with the outcome and the request's record

:meth:`Pipeline.build` composes the parts from the settings; nothing else in the runtime knows the
order of the steps. A pipeline is one deployment of a model version (see :mod:`runtime.registry`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .core.codes import ErrorType, Outcome
from .core.errors import BallastError, InternalError, Overloaded, ValidationFailed
from .core.record import Hook, RequestRecord, current_request, new_request_id
from .core.settings import DrillSettings, Settings, StageSettings
from .engine.batching.queue import AdaptiveBatcher
from .engine.cache import ResultCache
from .engine.chain import ChainResult, InferenceChain, ModelStage, RuleStage
from .engine.faults import FaultInjector
from .engine.resilience.breaker import CircuitBreaker
from .engine.session import OnnxModel
from .engine.validation import BusinessRule, Schema, Validator
from .observe.hooks import CompositeHook
from .observe.metrics import PrometheusHook, RuntimeMetrics, default_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prediction:
    request_id: str
    outputs: dict[str, np.ndarray]
    served_by: str
    degraded: bool
    model_name: str
    model_version: str
    inputs: Mapping[str, np.ndarray] | None = None
    """The validated inputs it answered (a shadow runs them again on a candidate)."""


class Closing(Protocol):
    def close(self) -> None: ...


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
        examples: Sequence[Any] = (),
        metrics: RuntimeMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache: ResultCache | None = None,
        closing: Sequence[Closing] = (),
    ) -> None:
        self.name = name
        self.validator = validator
        self.chain = chain
        self.hooks = hooks
        self.timeout_s = timeout_s
        self.warmup_runs = warmup_runs
        self.examples = tuple(examples)
        """Payloads that must be valid, and that every stage (the rule stage too) answers at start-up."""
        self.example_outputs: list[dict[str, np.ndarray]] = []
        """The primary's answer to each example (for the services' documents)."""
        self.metrics = metrics
        """Flushed when the pipeline closes (see runtime/observe/metrics.py, MetricBuffer)."""
        self._clock = clock
        self.cache = cache
        """The deployment's result cache (``None``: off)."""
        self.closing = tuple(closing)
        """What was made for this pipeline alone (its version's drift hook), closed after it drains."""
        self.ready = False
        self._artifacts = {stage.model.name: stage.model.sha256 for stage in chain.stages}
        """Each model's file hash, by name, for the request's record."""

    @classmethod
    def build(
        cls,
        name: str,
        *,
        models: Sequence[OnnxModel],
        schema: Schema,
        settings: Settings,
        stages: Sequence[StageSettings] | None = None,
        rules: Sequence[BusinessRule] = (),
        fallback_rules: RuleStage | None = None,
        examples: Sequence[Any] = (),
        drills: DrillSettings | None = None,
        hooks: Sequence[Hook] = (),
        metrics: RuntimeMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache: ResultCache | None = None,
        closing: Sequence[Closing] = (),
    ) -> Pipeline:
        """Compose a pipeline: ``models[0]`` is the primary, the rest fallbacks in order, each run as
        its ``stages`` entry says (by default ``settings.stage(model.name)``). A model whose batch
        dimension is fixed gets batches of one row."""
        drills = drills or DrillSettings()
        if stages is None:
            stages = [settings.stage(model.name) for model in models]
        if len(stages) != len(models):
            raise ValueError(f"one stage setting per model, got {len(stages)} for {len(models)} models")
        metrics = (metrics or default_metrics()) if drills.metrics_enabled else None
        chain_stages = []
        for index, (model, stage) in enumerate(zip(models, stages, strict=True)):
            last_model = index == len(models) - 1
            chain_stages.append(
                ModelStage(
                    model=model,
                    batcher=AdaptiveBatcher(
                        model.run_async,
                        max_batch_size=stage.max_batch_size if model.batchable else 1,
                        max_wait_s=stage.max_batch_wait_ms / 1000,
                        max_in_flight=stage.max_batches_in_flight,
                        max_queue_rows=stage.max_queue_rows,
                        retry_after_s=settings.retry_after_s,
                        observer=metrics.batch_observer(model.name, model.version) if metrics else None,
                        clock=clock,
                    ),
                    breaker=CircuitBreaker(
                        model.name,
                        failure_rate=settings.breaker_failure_rate,
                        window=settings.breaker_window,
                        min_calls=settings.breaker_min_calls,
                        recovery_s=settings.breaker_recovery_s,
                        clock=clock,
                        on_change=metrics.on_breaker_change if metrics else None,
                    ),
                    reserve_s=0.0 if last_model else settings.fallback_reserve_ms / 1000,
                )
            )
        chain = InferenceChain(chain_stages, fallback_rules, shed_policy=settings.shed_policy, clock=clock)
        all_hooks = CompositeHook(
            [PrometheusHook(metrics), *hooks] if metrics else hooks,
            on_hook_error=metrics.on_hook_error if metrics else None,
        )
        return cls(
            name,
            Validator(schema, rules, content_checks=drills.content_checks),
            chain,
            hooks=all_hooks,
            timeout_s=settings.request_timeout_ms / 1000,
            warmup_runs=settings.warmup_runs,
            examples=examples,
            metrics=metrics,
            clock=clock,
            cache=cache,
            closing=closing,
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Warm every model at batch sizes 1 and max, seed the batchers' latency models, check the
        examples against every stage, and report ready."""
        for stage in self.chain.stages:
            sizes = sorted({1, stage.batcher.max_batch_size})
            timings = await asyncio.to_thread(stage.model.warmup, sizes, self.warmup_runs)
            for rows, seconds in timings:
                stage.batcher.latency.observe(rows, seconds)
            stage.batcher.start()
        self.example_outputs = [await asyncio.to_thread(self._check_example, e) for e in self.examples]
        self.ready = True

    def _check_example(self, payload: Any) -> dict[str, np.ndarray]:
        """Fail start-up unless ``payload`` is valid and every stage answers it alike: the same
        output names, dtypes and shapes as the primary's answer."""
        try:
            request = self.validator.validate(payload)
        except ValidationFailed as exc:
            raise ValueError(f"{self.name}: a declared example is not valid: {exc}") from None
        answers = {stage.name: stage.run_now(request.inputs, request.rows) for stage in self.chain.stages}
        rules = self.chain.rules
        if rules is not None:
            answers[rules.name] = dict(rules.answer(request))
        primary = self.chain.primary.name
        want = {name: (answers[primary][name].dtype, answers[primary][name].shape) for name in self.chain.output_names}
        for stage, outputs in answers.items():
            got = {
                name: (outputs[name].dtype, outputs[name].shape) for name in self.chain.output_names if name in outputs
            }
            if got != want:
                raise TypeError(
                    f"{self.name}: stage {stage!r} answers {_describe(got)} where {primary!r} answers "
                    f"{_describe(want)}; every stage must give the same outputs (names, dtypes, shapes)"
                )
        return {name: answers[primary][name] for name in self.chain.output_names}

    async def close(self) -> None:
        """Stop admitting, finish admitted requests, release the models' threads."""
        self.ready = False
        for stage in self.chain.stages:
            await stage.batcher.close(drain=True)
            stage.model.close()
        for resource in self.closing:
            await asyncio.to_thread(resource.close)
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
    def version(self) -> str:
        """The deployment's version: its primary model's."""
        return self.chain.primary.model.version

    @property
    def model_names(self) -> list[str]:
        return [stage.model.name for stage in self.chain.stages]

    # --- the request path ------------------------------------------------------------------

    async def predict(
        self,
        payload: Any,
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        observe: bool = True,
        cache: bool = True,
        route: str = "production",
        principal: str | None = None,
        model: str | None = None,
    ) -> Prediction:
        """Answer ``payload`` for ``principal`` (who asked, when known). ``observe=False`` (a shadow's
        copy): no hook hears of it. ``cache=False`` (a canary's request, a caller's ``no-cache``): the
        result cache is neither read nor filled. ``model``: one of :attr:`model_names` to begin the
        chain with (a fallback asked for by name; the cache, which holds the primary's answers, is
        then not used); ``ValueError`` for a name the chain does not have."""
        start = self.model_names.index(model) if model is not None else 0
        started = self._clock()
        record = RequestRecord(
            request_id or new_request_id(), self.name, self.version, route=route, principal=principal
        )
        token = current_request.set(record)
        outcome = Outcome.ERROR
        try:
            # a caller may ask for less time than the server allows, never more
            budget = min(timeout_s, self.timeout_s) if timeout_s else self.timeout_s
            result = await self._serve(
                payload, record, started + budget, cache and start == 0 and self.cache is not None, start
            )
            outcome = Outcome.FALLBACK if result.degraded else Outcome.SUCCESS
            record.outputs = result.outputs
            record.artifact = self._artifacts.get(result.model_name)
            return Prediction(
                record.request_id,
                result.outputs,
                result.served_by,
                result.degraded,
                result.model_name,
                result.model_version,
                record.inputs,
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
            record.error_type = ErrorType.INTERNAL_ERROR
            log.exception("request %s failed", record.request_id)
            raise InternalError(f"request {record.request_id} failed") from exc
        finally:
            record.total_s = self._clock() - started
            current_request.reset(token)
            if observe:
                self.hooks.on_request(outcome, record)

    async def _serve(
        self, payload: Any, record: RequestRecord, deadline: float, use_cache: bool, start: int = 0
    ) -> ChainResult:
        started = time.perf_counter()
        try:
            request = self.validator.validate(payload)
        finally:
            record.validation_s = time.perf_counter() - started
        record.rows, record.inputs, record.records = request.rows, request.inputs, request.records
        if not use_cache:
            return await self.chain.run(request, deadline, record, start)
        assert self.cache is not None
        key = self.cache.key(request.inputs)
        found = self.cache.get(key)
        primary = self.chain.primary.model
        if found is not None:
            record.served_by, record.model_version, record.cached = primary.name, primary.version, True
            return ChainResult(found, primary.name, False, primary.name, primary.version)
        result = await self.chain.run(request, deadline, record)
        if not result.degraded:
            self.cache.put(key, result.outputs)
        return result


def _describe(outputs: Mapping[str, tuple[np.dtype[Any], tuple[int, ...]]]) -> str:
    return ", ".join(f"{name}: {dtype}{list(shape)}" for name, (dtype, shape) in sorted(outputs.items()))

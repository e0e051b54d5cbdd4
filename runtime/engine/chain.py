"""The inference chain: primary model -> fallback model(s) -> business rules.

For each model stage, in order::

    breaker.allow()?                 no  -> next stage (CIRCUIT_OPEN)
    time left before the reserve?    no  -> next stage (TIMEOUT)
    stage.submit() within the stage's timeout (a request larger than the stage's batches is
    computed in several, all or nothing)
        raised                            -> breaker failure, next stage (ERROR)
        timed out                         -> breaker failure if the model hung, next stage (TIMEOUT)
        NaN / inf / wrong shape           -> breaker failure, next stage (INVALID_OUTPUT)
        shed: cannot finish in time       -> next stage (OVERLOADED)
        shed: queue full, shutting down   -> 503 to the caller, or next stage when shed_policy
                                             is "degrade" (OVERLOADED)
    otherwise                             -> breaker success; answer

With no rules and no stage answering: only timeouts -> 504; timeouts and sheds -> 503 with
Retry-After (the server is too busy for this deadline); any other failure -> 503 unavailable.

A stage's timeout is the request's remaining time less ``reserve_s``, the time it leaves for the
stages after it. The rule stage is a plain function of the validated request that always
answers. Every answer says which stage produced it and whether it is degraded (not
from the primary).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..core.codes import FallbackReason, ShedReason
from ..core.errors import (
    ChainExhausted,
    CircuitOpen,
    DeadlineExceeded,
    InvalidOutput,
    Overloaded,
    StageFailure,
    StageTimeout,
)
from ..core.record import RequestRecord
from ..core.signature import TensorSpec
from .batching.queue import AdaptiveBatcher, BatchResult
from .resilience.breaker import CircuitBreaker
from .session import OnnxModel
from .validation.request import ValidatedRequest, all_finite

Arrays = dict[str, np.ndarray]


@dataclass(slots=True)
class ModelStage:
    model: OnnxModel
    batcher: AdaptiveBatcher
    breaker: CircuitBreaker
    reserve_s: float = 0.0
    """Time this stage leaves, out of the request's deadline, for the stages after it."""

    @property
    def name(self) -> str:
        return self.model.name

    def run_now(self, inputs: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """The stage's outputs computed in the calling thread, in batches the stage takes (start-up
        checks; requests go through :meth:`submit`)."""
        size = self.batcher.max_batch_size
        parts = [
            self.model.run({name: array[start : start + size] for name, array in inputs.items()}, inject=False)
            for start in range(0, rows, size)
        ]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    async def submit(
        self, inputs: Mapping[str, np.ndarray], rows: int, deadline: float, on_start: Callable[[], None]
    ) -> BatchResult:
        """The stage's outputs for ``rows`` rows. More rows than the stage's batches hold are cut into
        batch-sized parts, computed concurrently and joined; any part failing fails the request."""
        size = self.batcher.max_batch_size
        if rows <= size:
            return await self.batcher.submit(inputs, rows, deadline, on_start=on_start)
        starts = range(0, rows, size)
        parts = [{name: array[start : start + size] for name, array in inputs.items()} for start in starts]
        results = await asyncio.gather(
            *(
                self.batcher.submit(part, min(size, rows - start), deadline, on_start=on_start)
                for part, start in zip(parts, starts, strict=True)
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        done = [r for r in results if isinstance(r, BatchResult)]
        return BatchResult(
            {name: np.concatenate([r.outputs[name] for r in done]) for name in done[0].outputs},
            max(r.queue_wait_s for r in done),
            max(r.inference_s for r in done),
            max(r.batch_rows for r in done),
        )


@dataclass(frozen=True, slots=True)
class RuleStage:
    """The last resort: business rules that answer from the validated request alone."""

    name: str
    version: str
    answer: Callable[[ValidatedRequest], Mapping[str, np.ndarray]]


@dataclass(frozen=True, slots=True)
class ChainResult:
    outputs: Arrays
    served_by: str
    degraded: bool
    model_name: str
    model_version: str


class InferenceChain:
    def __init__(
        self,
        stages: Sequence[ModelStage],
        rules: RuleStage | None = None,
        *,
        outputs: Sequence[TensorSpec] | None = None,
        shed_policy: Literal["reject", "degrade"] = "reject",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not stages:
            raise ValueError("a chain needs at least one model stage")
        self.stages = tuple(stages)
        self.rules = rules
        self.shed_policy = shed_policy
        self._clock = clock
        """What deadlines are measured on (the batchers' clock)."""
        self.outputs = tuple(outputs) if outputs is not None else stages[0].model.signature.outputs
        """What every stage must answer: names and row shapes (the primary's outputs by default)."""
        for stage in self.stages:
            for spec in self.outputs:
                theirs = stage.model.signature.output(spec.name)  # KeyError names the gap
                if len(theirs.shape) != len(spec.shape):
                    raise TypeError(
                        f"stage {stage.name!r} output {spec.name!r} is {theirs.describe()}, "
                        f"the chain expects {spec.describe()}"
                    )

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.outputs)

    @property
    def primary(self) -> ModelStage:
        return self.stages[0]

    async def run(
        self, request: ValidatedRequest, deadline: float, record: RequestRecord, start: int = 0
    ) -> ChainResult:
        """The first answer of the stages from ``start`` on (a caller may ask for a fallback model by
        its name: the chain then begins there), else the rule stage's; degraded when a stage after
        ``start`` answered."""
        failures: list[StageFailure | Overloaded] = []
        for index, stage in enumerate(self.stages[start:], start):
            reason: FallbackReason
            try:
                return await self._call_model(stage, request, deadline, record, degraded=index > start)
            except StageFailure as exc:
                failures.append(exc)
                reason = exc.reason
            except Overloaded as exc:
                # "cannot finish in time here" is what a timeout says: the next stage may; a full
                # queue follows the shed policy (reject: 503 now; degrade: the next stage)
                if exc.reason is not ShedReason.DEADLINE and self.shed_policy == "reject":
                    raise
                failures.append(exc)
                reason = FallbackReason.OVERLOADED
            record.fallbacks.append((stage.name, self._next_name(index), reason))
        if self.rules is not None:
            outputs = self._checked(self.rules.answer(request), request.rows, self.rules.name)
            record.served_by, record.model_version = self.rules.name, self.rules.version
            return ChainResult(outputs, self.rules.name, True, self.rules.name, self.rules.version)
        if all(isinstance(f, (StageTimeout, Overloaded)) for f in failures):
            # out of time everywhere: shed somewhere -> 503 with Retry-After; only timeouts -> 504
            sheds = [f for f in failures if isinstance(f, Overloaded)]
            if sheds:
                raise sheds[-1]
            raise DeadlineExceeded("every stage timed out")
        raise ChainExhausted("; ".join(f"{s.name}: {f}" for s, f in zip(self.stages[start:], failures, strict=False)))

    def _next_name(self, index: int) -> str:
        if index + 1 < len(self.stages):
            return self.stages[index + 1].name
        return self.rules.name if self.rules is not None else "none"

    async def _call_model(
        self,
        stage: ModelStage,
        request: ValidatedRequest,
        deadline: float,
        record: RequestRecord,
        degraded: bool,
    ) -> ChainResult:
        breaker = stage.breaker
        if not breaker.allow():
            raise CircuitOpen(f"{stage.name}: circuit open")
        stage_deadline = deadline - stage.reserve_s
        timeout = stage_deadline - self._clock()
        if timeout <= 0:
            breaker.record_ignored()
            raise StageTimeout(f"{stage.name}: no time left")
        started: list[float] = []
        try:
            async with asyncio.timeout(timeout):
                result = await stage.submit(
                    request.inputs, request.rows, stage_deadline, lambda: started.append(self._clock())
                )
            outputs = self._checked(result.outputs, request.rows, stage.name)
        except TimeoutError as exc:
            if self._model_was_slow(stage, started, self._clock()):
                breaker.record_failure()
            else:
                breaker.record_ignored()
            raise StageTimeout(f"{stage.name}: no answer within {timeout * 1000:.0f} ms") from exc
        except StageFailure:
            breaker.record_failure()
            raise
        except BaseException:  # shed, cancelled, or a bug: says nothing about the model
            breaker.record_ignored()
            raise
        breaker.record_success()
        record.served_by, record.model_version = stage.name, stage.model.version
        record.queue_wait_s, record.inference_s = result.queue_wait_s, result.inference_s
        record.batch_rows = result.batch_rows
        return ChainResult(outputs, stage.name, degraded, stage.name, stage.model.version)

    SLOW_FACTOR = 10.0
    SLOW_FLOOR_S = 0.1

    @classmethod
    def _model_was_slow(cls, stage: ModelStage, started: list[float], now: float) -> bool:
        """Whether a timed-out request's batch had been computing for more than ten times the
        longest batch the latency model expects, and at least 100 ms: a hung or stalling model,
        which the breaker should cut off. A request that timed out in the queue, or in a batch
        slowed by a saturated CPU, says nothing about the model; counting it let a 4x overload open
        the breaker on a healthy model and turn every request into a 503 (benchmarks/overload.py)."""
        if not started:
            return False
        expected = stage.batcher.latency.predict(stage.batcher.max_batch_size)
        return now - started[0] > max(cls.SLOW_FACTOR * expected, cls.SLOW_FLOOR_S)

    def _checked(self, outputs: Mapping[str, np.ndarray], rows: int, stage: str) -> Arrays:
        """The chain's outputs from a stage's answer, or :class:`InvalidOutput`."""
        checked: Arrays = {}
        for spec in self.outputs:
            array = outputs.get(spec.name)
            if array is None:
                raise InvalidOutput(f"{stage}: output {spec.name!r} missing")
            if array.shape[:1] != (rows,) or not spec.row_shape_matches(array.shape[1:]):
                raise InvalidOutput(
                    f"{stage}: output {spec.name!r} has shape {array.shape}, "
                    f"expected {spec.describe()} with {rows} rows"
                )
            if array.dtype.kind == "f" and not all_finite(array):
                raise InvalidOutput(f"{stage}: output {spec.name!r} is not finite")
            checked[spec.name] = array
        return checked

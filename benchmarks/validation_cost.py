"""What validating a request costs in process: the fraud service's records (one, and a batch of 64)
and the digits service's images, through the service's own validator, in interleaved rounds; and,
where the checkout declares services, what turning the fraud model's outputs into the service's answer
costs (its ``answer`` function: a pydantic row per transaction).

    python -m benchmarks.validation_cost [--rounds 5] [--per-round 5000]

Run it in two checkouts to compare validators (``PYTHONPATH=DIR python -m benchmarks.validation_cost``
from ``DIR``): it builds each service's validator with whichever API the checkout has.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from models import fraud


def fraud_validator() -> Callable[[Any], object]:
    from runtime import RecordSchema, Validator

    if hasattr(fraud, "Transaction"):
        schema = RecordSchema(fraud.Transaction, input_name="input", max_rows=64)
    else:  # the hand-written validator of earlier checkouts
        schema = RecordSchema(fraud.FIELDS, input_name="input", max_rows=64)  # type: ignore[attr-defined]
    return Validator(schema, fraud.RULES).validate


def digits_validator() -> Callable[[Any], object]:
    from runtime import Validator

    try:
        from services.digits import Digits

        declaration = Digits.inner.declaration
        import numpy as np

        from runtime import ModelSignature, TensorSpec

        signature = ModelSignature((TensorSpec("input", np.dtype(np.float32), (None, 64)),), ())
        return Validator(declaration.schema(signature, 64)).validate
    except (ImportError, AttributeError):
        from services.digits import ImageSchema  # type: ignore[attr-defined]

        return Validator(ImageSchema("input", max_rows=64)).validate


def fraud_answer() -> Callable[[], object] | None:
    """The fraud service's answer to one row of outputs, if this checkout declares services."""
    try:
        from services.fraud import Fraud, FraudSettings
    except ImportError:
        return None
    import numpy as np

    declaration, settings = Fraud.inner.declaration, FraudSettings()
    outputs = {"label": np.array([0]), "probabilities": np.array([[0.97, 0.03]], np.float32)}
    return lambda: declaration.answer_rows(outputs, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=5000)
    args = parser.parse_args()
    records, _ = fraud.generate(2000, seed=3)
    from sklearn.datasets import load_digits

    images = [image.tolist() for image in load_digits().images[:64]]
    record_check, image_check = fraud_validator(), digits_validator()
    cases: dict[str, Callable[[int], object]] = {
        "fraud, 1 record": lambda i: record_check(records[i % 2000]),
        "fraud, 64 records": lambda i: record_check(records[(i % 30) * 64 : (i % 30) * 64 + 64]),
        "digits, 1 image": lambda i: image_check({"images": [images[i % 64]]}),
    }
    answer = fraud_answer()
    if answer is not None:
        cases["fraud answer, 1 row"] = lambda i: answer()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, case in cases.items():
            n = args.per_round if "64" not in name else args.per_round // 16
            started = time.perf_counter()
            for i in range(n):
                case(i)
            samples[name].append((time.perf_counter() - started) / n * 1e6)
    print(f"median of {args.rounds} interleaved rounds, microseconds per request:")
    for name, values in samples.items():
        print(f"  {name:20s} {statistics.median(values):8.1f} us  (rounds: {', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()

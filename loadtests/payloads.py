"""Request bodies for the load tests: real-looking valid requests and a small share of invalid ones.

Fraud transactions come from the same generator as the training data, with another seed; digits
are scikit-learn's bundled images. Invalid requests are the mistakes clients make: wrong types,
out-of-range values, missing fields, malformed shapes.
"""

from __future__ import annotations

import random
from typing import Any

from models import fraud


def fraud_transactions(n: int = 2000, seed: int = 1234, context: str = "usual") -> list[dict[str, Any]]:
    """``n`` transactions drawn in ``context`` (a key of ``models.fraud.CONTEXTS``)."""
    records, _ = fraud.generate(n, seed=seed, context=fraud.CONTEXTS[context])
    return records


def fraud_invalid(rng: random.Random, valid: dict[str, Any]) -> dict[str, Any]:
    broken = dict(valid)
    choice = rng.randrange(4)
    if choice == 0:
        broken["amount"] = -abs(broken["amount"])
    elif choice == 1:
        broken["currency"] = "DOGE"
    elif choice == 2:
        del broken["hour"]
    else:
        broken["card_age_days"] = "old"
    return broken


def digit_images(n: int = 500) -> list[list[list[float]]]:
    from sklearn.datasets import load_digits

    images = load_digits().images[-n:]
    return [image.tolist() for image in images]


def digits_invalid(rng: random.Random, image: list[list[float]]) -> dict[str, Any]:
    choice = rng.randrange(3)
    if choice == 0:
        return {"images": [[pixel for row in image for pixel in row]]}  # flat 64 instead of 8x8
    if choice == 1:
        return {"images": [[[pixel * 10 for pixel in row] for row in image]]}  # out of range
    return {"pixels": [image]}  # wrong field

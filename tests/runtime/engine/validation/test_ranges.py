"""Learned ranges: rounded outward, never tighter than the data, and wide enough by default that real
data the model did not train on passes (measured over many seeded splits, the rates printed)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split

from runtime import Bounds, learned_bounds, rejections
from runtime.engine.validation import DEFAULT_MARGIN, round_outward


def test_bounds_are_rounded_outward_to_three_significant_digits_at_the_interval_scale() -> None:
    assert round_outward(11.067999839782715, 14.83) == Bounds(11.0, 14.9)
    assert round_outward(-0.337, 7.031) == Bounds(-0.34, 7.04)
    assert round_outward(278.0, 1680.0) == Bounds(270.0, 1680.0)
    assert str(round_outward(0.1300000011920929, 0.6600000262260437)) == "[0.13, 0.661]"
    assert round_outward(0.0, 0.0) == Bounds(0.0, 0.0)


@pytest.mark.parametrize("low", [-1e6, -3.3, 0.0, 1e-3, 12.345678])
def test_rounding_never_tightens(low: float) -> None:
    for high in (low, low + 1e-4, low + 0.5, low + 77.7, low + 1e7):
        rounded = round_outward(low, high)
        assert rounded.low <= low
        assert rounded.high >= high


def wine_refusals(margin: float, splits: int = 100) -> list[int]:
    """For each seeded 75 % split: how many of the 178 wines the ranges learned from it refuse."""
    wine = load_wine()
    names = [n.replace("/", "_") for n in wine.feature_names]
    counts = []
    for seed in range(splits):
        train, _, _, _ = train_test_split(
            wine.data, wine.target, test_size=0.25, random_state=seed, stratify=wine.target
        )
        bounds = learned_bounds(
            dict(zip(names, train.min(0), strict=True)), dict(zip(names, train.max(0), strict=True)), margin
        )
        outside = np.zeros(len(wine.data), dtype=bool)
        for column, name in enumerate(names):
            outside |= (wine.data[:, column] < bounds[name].low) | (wine.data[:, column] > bounds[name].high)
        counts.append(int(outside.sum()))
        assert sum(rejections(bounds, names, wine.data).values()) >= counts[-1]  # per feature, rows may repeat
    return counts


def test_the_default_margin_lets_every_real_wine_through_over_100_splits(capsys: pytest.CaptureFixture[str]) -> None:
    rates = {margin: wine_refusals(margin) for margin in (0.1, 0.25, DEFAULT_MARGIN)}
    with capsys.disabled():
        for margin, counts in rates.items():
            print(
                f"\nmargin {margin}: splits refusing a wine {sum(c > 0 for c in counts)}/100, "
                f"wines refused per split mean {np.mean(counts):.2f} max {max(counts)}"
            )
    assert max(rates[DEFAULT_MARGIN]) == 0
    assert max(rates[0.1]) > 0  # the narrower margins do refuse real wines: the test can tell them apart

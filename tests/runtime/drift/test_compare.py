"""One window against a reference, on small distributions built for the purpose: which test, the
correction across features, the distance against chance and the floor, and the direction."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.drift import Feature, FeatureKind, Reference, compare
from runtime.drift.compare import _chi2_p

FEATURES = (Feature("x", FeatureKind.NUMERIC), Feature("colour", FeatureKind.CATEGORICAL))


def sample(
    rng: np.random.Generator, n: int, mean: float = 0.0, shares: tuple[float, ...] = (0.6, 0.3, 0.1)
) -> np.ndarray:
    return np.column_stack([rng.normal(mean, 1.0, n), rng.choice(len(shares), size=n, p=shares)])


def test_the_same_distribution_does_not_drift_and_a_moved_one_does_in_the_right_direction() -> None:
    rng = np.random.default_rng(0)
    reference = Reference(sample(rng, 3000), FEATURES)
    same = {r.name: r for r in compare(reference, sample(rng, 1000))}
    assert not any(r.drifted for r in same.values())
    assert (same["x"].test, same["colour"].test) == ("ks", "chi2")
    moved = {r.name: r for r in compare(reference, sample(rng, 1000, mean=-0.5, shares=(0.3, 0.3, 0.4)))}
    assert moved["x"].drifted
    assert moved["x"].direction == "down"
    assert moved["x"].shift == pytest.approx(-0.5, abs=0.1)
    assert moved["colour"].drifted
    assert moved["colour"].direction == "2"  # the code whose share grew most
    assert moved["colour"].shift == pytest.approx(0.3, abs=0.05)
    assert all(r.adjusted_p >= r.p_value for r in moved.values())  # corrected across the features


def test_a_large_window_does_not_flag_a_shift_below_the_floor() -> None:
    rng = np.random.default_rng(1)
    reference = Reference(sample(rng, 50_000), FEATURES)
    [x, _] = compare(reference, sample(rng, 50_000, mean=0.03), min_effect=0.05)
    assert x.p_value < 0.01  # the test alone sees it...
    assert not x.drifted  # ...but 0.03 standard deviations is below the floor
    assert x.threshold == 0.05


def test_chance_distance_shrinks_with_the_window_and_is_computed_once_per_size() -> None:
    rng = np.random.default_rng(2)
    reference = Reference(sample(rng, 2000), FEATURES, bootstraps=50)
    small, large = reference.chance_distance(200), reference.chance_distance(2000)
    assert (small > large).all()
    assert reference.chance_distance(200) is small


@pytest.mark.parametrize("seed", range(3))
def test_the_bootstrap_computes_each_windows_distance_as_a_live_window_would(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = np.column_stack([sample(rng, 1500), rng.integers(0, 40, 1500)])  # a count: many ties
    reference = Reference(rows, (*FEATURES, Feature("count", FeatureKind.NUMERIC)), bootstraps=20)
    drawn = rng.integers(0, reference.rows, size=(25, 300))
    for i in range(len(reference.features)):
        one_by_one = [reference.distance(i, reference.sample[window, i]) for window in drawn]
        np.testing.assert_allclose(reference._bootstrap_distances(i, drawn), one_by_one, rtol=1e-9, atol=1e-12)


def test_rare_categories_are_pooled_and_a_single_column_tests_nothing() -> None:
    assert _chi2_p(np.array([[1000.0, 0.0], [1000.0, 0.0]])) == 1.0
    # the last two columns are expected fewer than 5 times each: pooled, they still carry the change
    assert _chi2_p(np.array([[990.0, 5.0, 3.0, 2.0], [960.0, 5.0, 15.0, 20.0]])) < 0.001
    assert _chi2_p(np.array([[990.0, 5.0, 3.0, 2.0], [985.0, 6.0, 4.0, 5.0]])) > 0.05


def test_shapes_and_sizes_are_checked() -> None:
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="rows x 2 features"):
        Reference(rng.normal(size=(500, 3)), FEATURES)
    with pytest.raises(ValueError, match="at least 100 rows"):
        Reference(sample(rng, 50), FEATURES)
    reference = Reference(sample(rng, 500), FEATURES, bootstraps=20)
    with pytest.raises(ValueError, match="rows x 2 features"):
        compare(reference, rng.normal(size=(100, 1)))


@pytest.mark.parametrize("seed", range(5))
def test_the_one_pass_statistics_equal_scipys(seed: int) -> None:
    from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

    from runtime.drift.reference import ecdf_gap

    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=700), rng.normal(0.2, 1.3, size=1900)
    ties = rng.integers(0, 6, size=500).astype(float), rng.integers(0, 7, size=800).astype(float)
    for x, y in ((a, b), ties):
        statistic, area = ecdf_gap(np.sort(x), np.sort(y))
        assert statistic == pytest.approx(ks_2samp(x, y).statistic, abs=1e-12)
        assert area == pytest.approx(wasserstein_distance(x, y), rel=1e-9)
    table = np.array([[400.0, 300.0, 200.0, 100.0], [380.0, 330.0, 150.0, 140.0]])
    assert _chi2_p(table) == pytest.approx(chi2_contingency(table, correction=False).pvalue, rel=1e-9)


def test_a_category_is_reported_by_its_name_when_the_feature_names_its_codes() -> None:
    rng = np.random.default_rng(9)
    named = (FEATURES[0], Feature("colour", FeatureKind.CATEGORICAL, ("red", "green", "blue")))
    reference = Reference(sample(rng, 3000), named)
    [_, colour] = compare(reference, sample(rng, 1000, shares=(0.3, 0.3, 0.4)))
    assert colour.direction == "blue"
    assert named[1].label(7.0) == "7"  # a code without a name

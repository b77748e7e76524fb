"""Bootstrap confidence intervals and the per-item metric forms behind them
(lsi_ml.evaluation.metrics):
coverage on synthetic data, 1/sqrt(n) width, determinism, the three statistic forms agree."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lsi_ml.evaluation.bootstrap import bootstrap_ci, bootstrap_distribution
from lsi_ml.evaluation.metrics import (
    attribute_accuracy,
    attribute_accuracy_per_image,
    f1_from_confusion,
    segmentation_confusion,
    segmentation_f1,
    segmentation_f1_per_image,
)
from lsi_ml.evaluation.table1 import format_ci, table1_row, table1_row_ci


def test_coverage_of_a_bernoulli_mean() -> None:
    """The 95 % interval of the mean of n Bernoulli(0.7) samples contains 0.7 in about 95 %
    of 200 independent repeats (binomial sd of the rate ~1.5 %; the percentile bootstrap
    undercovers slightly at small n)."""
    rng = np.random.default_rng(12345)
    hits = 0
    for rep in range(200):
        x = (rng.random(100) < 0.7).astype(np.float64)
        low, high = bootstrap_ci(x, n_boot=1000, seed=rep)
        hits += low <= 0.7 <= high
    assert 0.89 <= hits / 200 <= 0.99, hits


def test_coverage_of_a_gaussian_mean_at_level_080() -> None:
    rng = np.random.default_rng(7)
    hits = sum(lo <= 1.0 <= hi for lo, hi in (
        bootstrap_ci(rng.normal(1.0, 2.0, 80), n_boot=500, seed=k, level=0.8)
        for k in range(200)))
    assert 0.72 <= hits / 200 <= 0.88, hits


def test_width_shrinks_like_one_over_sqrt_n() -> None:
    rng = np.random.default_rng(0)

    def mean_width(n: int) -> float:
        widths = []
        for k in range(8):
            lo, hi = bootstrap_ci((rng.random(n) < 0.7).astype(float), n_boot=1000, seed=k)
            widths.append(hi - lo)
        return float(np.mean(widths))

    w100, w400, w1600 = mean_width(100), mean_width(400), mean_width(1600)
    assert 1.7 < w100 / w400 < 2.3 and 1.7 < w400 / w1600 < 2.3, (w100, w400, w1600)
    # and about the normal-theory width 2 * 1.96 * sqrt(p (1 - p) / n)
    assert w400 == pytest.approx(2 * 1.96 * math.sqrt(0.21 / 400), rel=0.15)


def test_deterministic_with_seed_and_seed_matters() -> None:
    x = np.random.default_rng(1).normal(size=50)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)
    np.testing.assert_array_equal(bootstrap_distribution(x, seed=3),
                                  bootstrap_distribution(x, seed=3))


def test_values_statistic_and_weighted_forms_agree() -> None:
    x = np.random.default_rng(2).normal(size=37)
    by_values = bootstrap_distribution(x, n_boot=300, seed=5)
    by_indices = bootstrap_distribution(statistic=lambda idx: x[idx].mean(), n=37, n_boot=300,
                                        seed=5)
    by_counts = bootstrap_distribution(weighted=lambda c: c @ x / 37, n=37, n_boot=300, seed=5)
    np.testing.assert_allclose(by_values, by_indices, rtol=1e-12)
    np.testing.assert_allclose(by_values, by_counts, rtol=1e-12, atol=1e-15)
    assert bootstrap_ci(x, seed=5) == pytest.approx(
        bootstrap_ci(weighted=lambda c: c @ x / 37, n=37, seed=5))


def test_interval_brackets_the_estimate_and_level_orders_widths() -> None:
    x = np.random.default_rng(3).exponential(size=200)
    lo95, hi95 = bootstrap_ci(x)
    lo50, hi50 = bootstrap_ci(x, level=0.5)
    assert lo95 < lo50 < x.mean() < hi50 < hi95


def test_edge_cases() -> None:
    assert bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25)  # no spread, no width
    assert all(math.isnan(v) for v in bootstrap_ci(np.zeros(0)))
    assert bootstrap_ci(np.full(5, np.inf)) == (math.inf, math.inf)  # PSNR of exact images
    low, high = bootstrap_ci(np.array([10.0, 20.0, np.inf, 30.0]), n_boot=200)
    assert 10.0 <= low and high == math.inf
    # a statistic undefined in most resamples gives no interval
    assert all(math.isnan(v) for v in bootstrap_ci(statistic=lambda i: math.nan, n=5))
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones(3), n_boot=0)
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones(3), level=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones((3, 2)))
    with pytest.raises(ValueError):
        bootstrap_ci()
    with pytest.raises(ValueError):
        bootstrap_ci(statistic=lambda i: 0.0)  # n missing
    with pytest.raises(ValueError):
        bootstrap_ci(weighted=lambda c: np.zeros(3), n=4, n_boot=10)  # wrong length


def test_large_n_is_blocked_and_fast() -> None:
    x = np.random.default_rng(4).random(20_000)
    low, high = bootstrap_ci(x, n_boot=1000)
    assert low < x.mean() < high and high - low < 0.02


def test_per_face_confusion_reproduces_the_set_f1() -> None:
    rng = np.random.default_rng(5)
    target = rng.integers(0, 4, size=(6, 5, 7))
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 4, target.shape))
    conf = segmentation_confusion(pred, target, 5)
    assert conf.shape == (6, 5, 5) and conf.sum() == target.size
    mean, per = segmentation_f1(pred, target, 5)
    mean2, per2 = f1_from_confusion(conf.sum(axis=0))
    assert float(mean2) == pytest.approx(mean)
    np.testing.assert_allclose(per2, per, equal_nan=True)  # class 4 absent: NaN in both
    # per image = segmentation_f1 of that image alone
    per_image = segmentation_f1_per_image(pred, target, 5)
    for i in range(6):
        assert per_image[i] == pytest.approx(segmentation_f1(pred[i], target[i], 5)[0])
    assert np.all(segmentation_f1_per_image(target, target, 5) == 1.0)
    bg, _ = f1_from_confusion(conf, ignore_background=True)
    for i in range(6):
        assert bg[i] == pytest.approx(
            segmentation_f1(pred[i], target[i], 5, ignore_background=True)[0])
    with pytest.raises(ValueError):
        segmentation_confusion(pred, target, 3)


def test_attribute_accuracy_per_image() -> None:
    logits = np.array([[1.0, -1.0, 2.0], [-1.0, -1.0, 1.0]])
    truth = np.array([[1, 0, 0], [0, 0, 1]])
    per = attribute_accuracy_per_image(logits, truth)
    np.testing.assert_allclose(per, [2 / 3, 1.0])
    assert per.mean() == pytest.approx(attribute_accuracy(logits, truth)[0])
    np.testing.assert_allclose(
        attribute_accuracy_per_image(truth.astype(bool), truth, from_logits=False), [1, 1])


def test_formatting() -> None:
    assert format_ci(0.891, (0.879, 0.902), percent=True) == "89.1 [87.9, 90.2]"
    assert format_ci(1.4321, (1.4, 1.5), digits=2) == "1.43 [1.40, 1.50]"
    assert format_ci(0.5) == "0.5" and format_ci(float("nan"), (0, 1)) == "n/a"
    assert format_ci(0.5, (math.nan, math.nan)) == "0.5"
    ci = {"verification_accuracy": (0.85, 0.95), "landmark_nme": (1.4, 1.6)}
    row = table1_row_ci("1:4", 0.9, None, None, 0.8, 0.7, 1.5, ci=ci)
    assert row == "| 1:4 | 90.00 [85.00, 95.00] | n/a | 80.00 | 70.00 | 1.50 [1.40, 1.60] |"
    assert table1_row_ci("1:4", 0.9, None, None, 0.8, 0.7, 1.5) == \
        table1_row("1:4", 0.9, None, None, 0.8, 0.7, 1.5)

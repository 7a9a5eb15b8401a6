"""harness.stats against scipy and hand-computed values: paired and Welch tests, Holm, clipped intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.stats import holm, mean_interval, metric_bounds, paired, seed_difference, welch


def test_paired_matches_scipy_ttest_rel() -> None:
    a, b = [0.71, 0.74, 0.69, 0.77], [0.70, 0.71, 0.68, 0.73]
    diff = paired(a, b)
    expected = stats.ttest_rel(a, b)
    ci = expected.confidence_interval(0.95)
    assert diff.test == "paired" and diff.n == 4 and diff.df == 3
    assert diff.p_value == pytest.approx(expected.pvalue)
    assert (diff.low, diff.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert diff.diff == pytest.approx(np.mean(a) - np.mean(b))


def test_pairing_removes_shared_seed_noise() -> None:
    """Seeds that move both strategies alike: Welch sees noise, the paired test sees a steady gain."""
    base = [0.60, 0.70, 0.80]
    better = [v + 0.01 + e for v, e in zip(base, (0.001, -0.001, 0.0), strict=True)]
    assert welch(better, base).p_value > 0.5
    assert paired(better, base).p_value < 0.01


def test_seed_difference_pairs_only_identical_seed_sets() -> None:
    a = {0: 0.71, 1: 0.74, 2: 0.69}
    b = {2: 0.68, 0: 0.70, 1: 0.71}  # same seeds, another order: paired by seed, not position
    same = seed_difference(a, b)
    assert same.test == "paired" and same.n == 3
    assert same.p_value == pytest.approx(stats.ttest_rel([0.71, 0.74, 0.69], [0.70, 0.71, 0.68]).pvalue)
    other = seed_difference(a, {0: 0.70, 1: 0.71, 3: 0.68})
    assert other.test == "welch"
    assert other.p_value == pytest.approx(
        stats.ttest_ind([0.71, 0.74, 0.69], [0.70, 0.71, 0.68], equal_var=False).pvalue
    )


def test_paired_constant_differences_and_too_few() -> None:
    assert paired([0.5, 0.6], [0.5, 0.6]).p_value == 1.0
    assert paired([0.6, 0.7], [0.5, 0.6]).p_value == 0.0
    assert math.isnan(paired([0.6], [0.5]).p_value)
    with pytest.raises(ValueError, match="length"):
        paired([0.1, 0.2], [0.1])


def test_holm_hand_computed() -> None:
    # sorted 0.01, 0.02, 0.03, 0.04 -> 4*0.01=0.04, 3*0.02=0.06, 2*0.03=0.06, 1*0.04=0.06 (monotone)
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    # step-down stops: 3*0.01=0.03, 2*0.04=0.08, max(0.08, 0.5)=0.5; capped at 1
    assert holm([0.5, 0.04, 0.01]) == pytest.approx([0.5, 0.08, 0.03])
    assert holm([0.9, 0.8]) == [1.0, 1.0]
    adjusted = holm([0.02, math.nan, 0.01])  # NaN is not a test: m = 2
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([]) == []


def test_holm_matches_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(0).uniform(0, 0.2, size=9)
    _, expected, _, _ = multitest.multipletests(p, method="holm")
    assert holm(list(p)) == pytest.approx(list(expected))


def test_holm_rejects_what_the_step_down_procedure_rejects() -> None:
    p = np.random.default_rng(1).uniform(0, 0.1, size=12)
    order = np.argsort(p)
    rejected = set()
    for rank, index in enumerate(order):  # the textbook procedure: stop at the first p > alpha / (m - rank)
        if p[index] > 0.05 / (len(p) - rank):
            break
        rejected.add(int(index))
    assert {i for i, q in enumerate(holm(list(p))) if q < 0.05} == rejected


def test_interval_clipped_to_the_metric_range() -> None:
    """Two seeds near 1: Student's t reaches past 1, the reported interval stops at 1."""
    values = [0.9244, 1.0]
    raw = mean_interval(values)
    assert raw.high > 1 and not raw.clipped
    clipped = mean_interval(values, bounds=(0.0, 1.0))
    assert clipped.clipped and clipped.high == 1.0 and clipped.low == pytest.approx(raw.low)
    assert clipped.mean == pytest.approx(np.mean(values))
    half = stats.t.ppf(0.975, 1) * np.std(values, ddof=1) / math.sqrt(2)
    assert raw.low == pytest.approx(np.mean(values) - half)
    assert not mean_interval([0.5, 0.52, 0.51], bounds=(0.0, 1.0)).clipped


def test_metric_bounds() -> None:
    for name in ("top1", "top5", "map", "map_50", "map_small", "map_voc07", "miou", "pixel_acc"):
        assert metric_bounds(name) == (0.0, 1.0)
    assert metric_bounds("loss") is None

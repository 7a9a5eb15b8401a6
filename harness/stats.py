"""The report's statistics: confidence intervals over seeds, Welch's t-test, the Pareto frontier.

Seeds are few (often 3), so intervals use Student's t, not the normal approximation, and two
strategies are compared with Welch's test, which does not assume equal variances. scipy does
the distribution work; this module only decides what is computed from what.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05

NAN = float("nan")


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided confidence interval (NaN bounds when n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Difference:
    """Mean of `a` minus mean of `b`: Welch's interval and two-sided p-value."""

    diff: float
    low: float
    high: float
    p_value: float
    df: float

    def significant(self, alpha: float = ALPHA) -> bool | None:
        """p < alpha; None when the test cannot be made (fewer than two values on a side)."""
        return None if math.isnan(self.p_value) else bool(self.p_value < alpha)


def _clean(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[~np.isnan(array)]


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean ± t(n-1) · s / √n, with s the sample standard deviation."""
    x = _clean(values)
    if len(x) == 0:
        return Interval(NAN, NAN, NAN, 0)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, NAN, NAN, len(x))
    half = float(stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half, len(x))


def welch(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
    """Welch's unequal-variance t-test of mean(a) - mean(b), with its confidence interval.

    Two identical constant samples give p = 1; two different constant samples give p = 0
    (no noise at all separates them), rather than scipy's NaN.
    """
    x, y = _clean(a), _clean(b)
    if len(x) == 0 or len(y) == 0:
        return Difference(NAN, NAN, NAN, NAN, NAN)
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return Difference(diff, NAN, NAN, NAN, NAN)
    if x.std() == 0 and y.std() == 0:
        return Difference(diff, diff, diff, 1.0 if diff == 0 else 0.0, NAN)
    with warnings.catch_warnings():  # one constant side (seeds that all scored alike) is a valid sample
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        result = stats.ttest_ind(x, y, equal_var=False)
        ci = result.confidence_interval(confidence)
    return Difference(diff, float(ci.low), float(ci.high), float(result.pvalue), float(result.df))


def pareto_optimal(costs: Sequence[float], scores: Sequence[float]) -> list[bool]:
    """Which points no other point dominates (costs no more, scores no less, and is better in one).

    Points with an unknown cost or score are never on the frontier.
    """
    points = list(zip(costs, scores, strict=True))
    known = [not (math.isnan(c) or math.isnan(s)) for c, s in points]
    flags = []
    for i, (cost, score) in enumerate(points):
        if not known[i]:
            flags.append(False)
            continue
        dominated = any(
            known[j] and c <= cost and s >= score and (c < cost or s > score)
            for j, (c, s) in enumerate(points)
            if j != i
        )
        flags.append(not dominated)
    return flags

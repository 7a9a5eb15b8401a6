"""The report's statistics: intervals over seeds (or a bootstrap over images and seeds), paired and Welch
t-tests, Holm's correction, the Pareto frontier.

Seeds are few (often 3), so intervals use Student's t, not the normal approximation. Two
strategies that ran the same seeds are compared with a paired t-test over those seeds (a seed
fixes the data order and the head's initialisation for both); otherwise with Welch's test,
which does not assume equal variances. The gains of one table are many tests at once, so their
p-values are Holm-corrected. An interval of a metric bounded to [0, 1] is clipped to it. Where
cells stored a score per test image (accuracies), a row's interval is a bootstrap over the test
images and the seeds together, so it also holds the test set's sampling error.
scipy does the distribution work; this module only decides what is computed from what.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05

NAN = float("nan")

#: metrics that lie in [0, 1] (proportions, F1, AUROC, calibration error): their intervals are clipped to it
_UNIT_METRICS = ("top", "map", "mar", "miou", "pixel_acc", "acc", "f1_", "balanced_acc", "auroc", "ece")


def metric_bounds(metric: str) -> tuple[float, float] | None:
    """The range a metric's values lie in, where known: [0, 1] for accuracies, mAP, mAR, mIoU, F1, AUROC, ECE."""
    return (0.0, 1.0) if metric.lower().startswith(_UNIT_METRICS) else None


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided confidence interval (NaN bounds when n < 2).

    `clipped` says a bound was moved to the metric's range, so the interval is no longer
    symmetric about the mean and `half_width` is only half its length.
    """

    mean: float
    low: float
    high: float
    n: int
    clipped: bool = False

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Difference:
    """Mean of `a` minus mean of `b`: the test's interval and two-sided p-value.

    `test` is "paired" (t over `n` shared seeds) or "welch" (`n` is then the smaller side).
    """

    diff: float
    low: float
    high: float
    p_value: float
    df: float
    test: str = "welch"
    n: int = 0

    def significant(self, alpha: float = ALPHA) -> bool | None:
        """p < alpha; None when the test cannot be made (fewer than two values on a side)."""
        return None if math.isnan(self.p_value) else bool(self.p_value < alpha)


def _clean(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[~np.isnan(array)]


def mean_interval(
    values: Sequence[float], confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None
) -> Interval:
    """Mean ± t(n-1) · s / √n, with s the sample standard deviation, clipped to `bounds` if given."""
    x = _clean(values)
    if len(x) == 0:
        return Interval(NAN, NAN, NAN, 0)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, NAN, NAN, len(x))
    half = float(stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    low, high = mean - half, mean + half
    if bounds is None:
        return Interval(mean, low, high, len(x))
    clipped_low, clipped_high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(mean, clipped_low, clipped_high, len(x), (clipped_low, clipped_high) != (low, high))


#: resamples of the bootstrap; fixed, with a fixed generator seed, so a report reads the same each time
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 0
#: resampled (seed, image) scores held at once: bounds the memory of a 50,000-image test split
_BOOTSTRAP_CHUNK_VALUES = 4_000_000


def bootstrap_interval(
    scores: Sequence[Sequence[float]],
    confidence: float = CONFIDENCE,
    bounds: tuple[float, float] | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """The mean of a seeds x images table of per-image scores, with a two-way percentile bootstrap interval.

    Each resample draws seeds with replacement and, independently, test images with replacement,
    and takes the mean of the drawn rows over the drawn columns: both the seed-to-seed spread and
    the test set's own sampling error are in the interval. Every seed must score the same images
    in the same order (a row per seed). With one seed it is the plain bootstrap over images; with
    few seeds the seed part is coarse (three seeds give ten distinct seed draws).
    """
    table = np.asarray(scores, dtype=float)
    if table.ndim != 2 or table.size == 0:
        return Interval(NAN, NAN, NAN, 0)
    n_seeds, n_images = table.shape
    mean = float(table.mean())
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_VALUES // (n_seeds * n_images))
    statistics = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        images = rng.integers(0, n_images, size=(size, n_images))
        seeds = rng.integers(0, n_seeds, size=(size, n_seeds))
        per_seed = table[:, images].mean(axis=2)  # (seeds, resamples): each seed's mean over the drawn images
        statistics.append(np.take_along_axis(per_seed.T, seeds, axis=1).mean(axis=1))
    drawn = np.concatenate(statistics)
    tail = (1 - confidence) / 2 * 100
    low, high = (float(v) for v in np.percentile(drawn, [tail, 100 - tail]))
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(mean, low, high, n_seeds)


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
    n = min(len(x), len(y))
    return Difference(diff, float(ci.low), float(ci.high), float(result.pvalue), float(result.df), "welch", n)


def paired(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
    """Paired t-test of mean(a - b) over aligned pairs (a[i] and b[i] share seed i), with its interval.

    Pairs with a NaN on either side are dropped. Constant differences give p = 1 when they are
    all 0 and p = 0 otherwise, as in `welch`.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {len(x)} and {len(y)}")
    keep = ~(np.isnan(x) | np.isnan(y))
    d = x[keep] - y[keep]
    if len(d) == 0:
        return Difference(NAN, NAN, NAN, NAN, NAN, "paired", 0)
    diff = float(d.mean())
    if len(d) < 2:
        return Difference(diff, NAN, NAN, NAN, NAN, "paired", 1)
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):  # equal up to the subtraction's rounding
        return Difference(diff, diff, diff, 1.0 if diff == 0 else 0.0, len(d) - 1, "paired", len(d))
    with warnings.catch_warnings():  # nearly constant differences are still a valid sample
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        result = stats.ttest_rel(x[keep], y[keep])
        ci = result.confidence_interval(confidence)
    return Difference(diff, float(ci.low), float(ci.high), float(result.pvalue), float(result.df), "paired", len(d))


def seed_difference(a: Mapping[int, float], b: Mapping[int, float], confidence: float = CONFIDENCE) -> Difference:
    """mean(a) - mean(b) from per-seed values: paired when both sides have the same seeds, Welch otherwise."""
    seeds_a = {s for s, v in a.items() if not math.isnan(v)}
    seeds_b = {s for s, v in b.items() if not math.isnan(v)}
    if seeds_a == seeds_b and len(seeds_a) >= 2:
        order = sorted(seeds_a)
        return paired([a[s] for s in order], [b[s] for s in order], confidence)
    return welch(list(a.values()), list(b.values()), confidence)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted among the m tests).

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) · p_(j)); an
    adjusted p < alpha rejects exactly the hypotheses Holm's procedure rejects at alpha.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p), NAN)
    known = np.flatnonzero(~np.isnan(p))
    order = known[np.argsort(p[known], kind="stable")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p[index])))
        adjusted[index] = running
    return [float(v) for v in adjusted]


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

"""Statistics for release gates (DESIGN §2), built on ``scipy.stats``.

* ``paired_bootstrap``: percentile confidence intervals of gated quantities (candidate
  value, drop, increase, ratio) over resampled image multisets. The statistic receives
  the multiplicity of every image per resample and computes candidate and baseline from
  the same multiset, so the bootstrap is paired.
* ``run_t_test``: a t-interval and one-sided p-value of a quantity across repeated
  runs (seeds); for a drop this is ``scipy.stats.ttest_rel`` of baseline and candidate.
* ``one_way_anova``: ``scipy.stats.f_oneway`` across variants' per-run values.

Everything is seeded by the caller; no global RNG state is touched.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats

from robustness_harness.errors import HarnessError
from robustness_harness.suite.thresholds import Interval, Limit

DEFAULT_RESAMPLES = 1000
"""Bootstrap resamples when a check sets ``confidence`` without ``resamples``."""

CountsStatistic = Callable[[np.ndarray], np.ndarray]
"""``statistic(counts)``: image multiplicities (B, n) → quantities (Q, B)."""


def counts_from_indices(indices: np.ndarray, n: int) -> np.ndarray:
    """Resampled indices (B, n) into 0..n-1 → multiplicity of each index per row (B, n)."""
    indices = np.asarray(indices, dtype=np.int64)
    rows = indices.reshape(-1, indices.shape[-1])
    flat = (rows + n * np.arange(len(rows))[:, None]).ravel()
    return np.bincount(flat, minlength=len(rows) * n).reshape(len(rows), n)


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile intervals (one per quantity) and the resampled values (Q, B)."""

    intervals: list[Interval]
    distribution: np.ndarray
    resamples: int
    seed: int


def paired_bootstrap(
    statistic: CountsStatistic,
    n_images: int,
    *,
    confidence: float,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> BootstrapResult:
    """Percentile bootstrap over ``n_images`` images (``scipy.stats.bootstrap``).

    Each resample draws ``n_images`` images with replacement; ``statistic`` gets their
    multiplicities (B, n) and returns the quantities (Q, B) computed from that one
    multiset for candidate and baseline alike. Seeded by ``seed``. An interval is NaN
    when a resampled value is NaN.
    """
    if n_images < 2:
        raise HarnessError(
            f"a bootstrap over images needs at least 2 images, got {n_images}",
            field="confidence",
            hint="evaluate more images, or remove confidence from the check",
        )
    if not 0 < confidence < 1:
        raise HarnessError(f"confidence must be in (0, 1), got {confidence}", field="confidence")

    def on_indices(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(statistic(counts_from_indices(indices, n_images)), dtype=np.float64)

    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        # NaN resamples are reported as an undefined interval below
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        res = scipy.stats.bootstrap(
            (np.arange(n_images),),
            on_indices,
            n_resamples=resamples,
            vectorized=True,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    dist = np.atleast_2d(res.bootstrap_distribution)
    low = np.atleast_1d(res.confidence_interval.low)
    high = np.atleast_1d(res.confidence_interval.high)
    undefined = np.isnan(dist).any(axis=1)
    low, high = np.where(undefined, math.nan, low), np.where(undefined, math.nan, high)
    intervals = [
        Interval(float(lo), float(hi), confidence) for lo, hi in zip(low, high, strict=True)
    ]
    return BootstrapResult(intervals, dist, resamples, seed)


@dataclass(frozen=True)
class RunTest:
    """A quantity across runs: mean, std, t-interval and the one-sided p-value that the
    limit is violated (NaN when every run gives the same value)."""

    quantity: str
    values: list[float]
    interval: Interval
    statistic: float
    pvalue: float
    limit: Limit

    def describe(self) -> str:
        """E.g. ``paired t over 3 runs: drop 95% CI [0.01, 0.05], t 2.1, p(drop > ...) 0.09``."""
        sign = ">" if self.limit.upper else "<"
        return (
            f"paired t over {len(self.values)} runs: {self.quantity} "
            f"{self.interval.describe()}, t {self.statistic:.3g}, "
            f"p({self.quantity} {sign} {self.limit.key}) {self.pvalue:.3g}"
        )


def run_t_test(quantity: Sequence[float], limit: Limit, *, confidence: float) -> RunTest:
    """t-interval (two-sided, ``confidence``) of the mean of ``quantity`` over runs, and
    the one-sided p-value of ``mean > limit`` (upper limits) or ``mean < limit``.

    ``scipy.stats.ttest_1samp`` of the per-run quantity against the limit: for a drop
    ``baseline_r - candidate_r`` this equals ``ttest_rel(baseline, candidate + limit)``.
    """
    q = np.asarray(quantity, dtype=np.float64)
    if q.size < 2:
        raise HarnessError(
            f"a t-test across runs needs at least 2 runs, got {q.size}",
            field="runs",
            hint="set runs: 3 (or more) on the variant",
        )
    if np.all(q == q[0]):  # no spread: the interval is the point, no test statistic
        mean = float(q[0])
        return RunTest(
            limit.quantity, q.tolist(), Interval(mean, mean, confidence), math.nan, math.nan, limit
        )
    two_sided = scipy.stats.ttest_1samp(q, popmean=limit.limit)
    ci = two_sided.confidence_interval(confidence)
    alternative = "greater" if limit.upper else "less"
    one_sided = scipy.stats.ttest_1samp(q, popmean=limit.limit, alternative=alternative)
    return RunTest(
        quantity=limit.quantity,
        values=q.tolist(),
        interval=Interval(float(ci.low), float(ci.high), confidence),
        statistic=float(two_sided.statistic),
        pvalue=float(one_sided.pvalue),
        limit=limit,
    )


@dataclass(frozen=True)
class Anova:
    """One-way ANOVA of per-run values grouped by variant (informational)."""

    f: float
    p: float
    groups: dict[str, list[float]]

    def describe(self) -> str:
        """E.g. ``"ANOVA across 3 variants: F 12.3, p 0.004"``."""
        return f"ANOVA across {len(self.groups)} variants: F {self.f:.3g}, p {self.p:.3g}"


def one_way_anova(groups: Mapping[str, Sequence[float]]) -> Anova:
    """``scipy.stats.f_oneway`` over the groups (at least 2, one with 2+ values)."""
    values = {k: [float(v) for v in vs] for k, vs in groups.items()}
    if len(values) < 2 or all(len(v) < 2 for v in values.values()):
        raise HarnessError(
            f"an ANOVA needs at least 2 variants and repeated runs; got "
            f"{', '.join(f'{k} ({len(v)} runs)' for k, v in values.items())}",
            field="anova",
            hint="set runs: 3 on the variants the check gates",
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        res = scipy.stats.f_oneway(*(np.asarray(v) for v in values.values()))
    return Anova(float(res.statistic), float(res.pvalue), values)

"""Deciding one gate, a pure function: measurements, check spec, baseline info → outcome.

``measure`` gathers what a gate needs through the session (models, predictions, the
runs of other variants); everything here works on those values alone, without a
session, files or models: per-class reduction, whether the baseline proves anything,
the statistics of repeated runs and of a bootstrap over images, the thresholds and the
comparison with a recorded snapshot. ``decide_gate`` puts them together into the
``CheckOutcome`` that failure messages and the report read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np

from robustness_harness.errors import HarnessError
from robustness_harness.metrics.base import MetricInfo, Resampled
from robustness_harness.run.outcome import CheckOutcome, GateStatistics
from robustness_harness.run.snapshots import SnapshotRef, judge_snapshot
from robustness_harness.suite import CheckSpec, Decision, Thresholds, decide, reduce_per_class
from robustness_harness.suite.thresholds import (
    Interval,
    baseline_error,
    gated_quantities,
    unusable_baseline,
)

if TYPE_CHECKING:
    from robustness_harness.stats import Anova, BootstrapResult, CountsStatistic, RunTest

Value = float | dict[str, float]
"""A metric value: a scalar, or one value per class."""


@dataclass(frozen=True)
class Measurement:
    """A metric value of one variant on one check's data, with report details."""

    value: Value
    n_images: int
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Gate:
    """Which gate is decided, by name: suite, variant, check, the suite's baseline
    variant, and the suite file that errors point into."""

    suite: str
    variant: str
    check: str
    baseline: str
    file: str | PathLike[str] | None = None


@dataclass(frozen=True)
class GateMeasurements:
    """What measuring a gate gave: the candidate's runs, the baseline's runs (None when
    the gate has no baseline value to compare with), the variant's seed, and the
    statistics (``gate_statistics``) when the check uses any."""

    candidate: Sequence[Measurement]
    baseline: Sequence[Measurement] | None = None
    seed: int = 0
    statistics: GateStatistics | None = None

    @property
    def candidate_value(self) -> Value:
        """The candidate's value: the mean over its runs."""
        return mean_value([m.value for m in self.candidate])

    @property
    def baseline_value(self) -> Value | None:
        """The baseline's value (mean over its runs), None without one."""
        return None if self.baseline is None else mean_value([m.value for m in self.baseline])


def decide_gate(
    gate: Gate,
    check: CheckSpec,
    info: MetricInfo,
    measured: GateMeasurements,
    snapshot: SnapshotRef | None = None,
) -> CheckOutcome:
    """The outcome of one gate: per-class values reduced, the baseline validated
    (``check_baseline``), the thresholds applied to the value or to the statistics'
    intervals (``check.decide``), and the value compared with ``snapshot`` (``baseline:
    snapshot``; with ``regen`` the value is only reported as recorded)."""
    cand_value, base_value = measured.candidate_value, measured.baseline_value
    check_baseline(
        check,
        info,
        base_value,
        baseline_name=gate.baseline,
        file=gate.file,
        field_prefix=f"checks.{gate.check}",
    )
    stats = measured.statistics
    value, baseline_value, decision, worst = decide_check(
        check=check,
        info=info,
        candidate=cand_value,
        baseline=base_value,
        intervals=stats.intervals if stats is not None else None,
    )
    violations, shown = judge_snapshot(snapshot, value) if snapshot is not None else ([], {})
    if violations:
        decision = dataclasses.replace(
            decision, passed=False, violations=[*decision.violations, *violations]
        )
    first, base = measured.candidate[0], measured.baseline
    return CheckOutcome(
        suite=gate.suite,
        variant=gate.variant,
        check=gate.check,
        metric=check.metric,
        value=value,
        baseline_value=baseline_value,
        decision=decision,
        thresholds=Thresholds.from_check(check),
        baseline_variant=gate.baseline,
        n_images=first.n_images,
        seed=measured.seed,
        worst_class=worst,
        per_class=cand_value if isinstance(cand_value, dict) else None,
        baseline_per_class=base_value if isinstance(base_value, dict) else None,
        extra={
            "reduce": check.reduce or "",
            "note": first.note,
            "details": first.details,
            "baseline_details": base[0].details if base is not None else {},
            "snapshot": shown,
        },
        statistics=stats,
    )


# -- reducing and deciding a value ---------------------------------------------------------
@dataclass(frozen=True)
class Reduced:
    """A check's gated value: ``value`` (per-class values reduced), the baseline's value
    as shown, ``compare_to`` (what relative thresholds compare with; None for
    ``worst_drop``, which already compares) and the class a per-class value comes from."""

    value: float
    baseline_value: float | None
    compare_to: float | None
    worst_class: str | None


def reduce_check(
    check: CheckSpec, info: MetricInfo, candidate: Value, baseline: Value | None
) -> Reduced:
    """Reduce per-class values (``check.reduce``) of the candidate and its baseline."""
    if isinstance(candidate, dict):
        base_map = baseline if isinstance(baseline, dict) else None
        value, worst_class = reduce_per_class(
            candidate, base_map, check.reduce, info.higher_is_better
        )
        baseline_value = None
        if check.reduce != "worst_drop" and base_map is not None:
            baseline_value, _ = reduce_per_class(
                base_map, None, check.reduce, info.higher_is_better
            )
        compare_to = None if check.reduce == "worst_drop" else baseline_value
        return Reduced(value, baseline_value, compare_to, worst_class)
    base_value = float(baseline) if isinstance(baseline, int | float) else None
    return Reduced(float(candidate), base_value, base_value, None)


def check_baseline(
    check: CheckSpec,
    info: MetricInfo,
    baseline: Value | None,
    *,
    baseline_name: str,
    file: str | PathLike[str] | None = None,
    field_prefix: str | None = None,
) -> None:
    """Raise ``HarnessError`` when the check gates against a baseline value that proves
    nothing: relative thresholds on a value of 0 or NaN, or ``worst_drop`` over classes
    that are all 0 or NaN in the baseline (NaN classes beside others are skipped, as
    ``reduce_per_class`` does). Absolute thresholds (``min``/``max``) are not affected."""
    if baseline is None:
        return
    if isinstance(baseline, dict):
        if check.reduce == "worst_drop":
            values = [float(v) for v in baseline.values()]
            if values and all(unusable_baseline(v) for v in values):
                shown = 0.0 if 0.0 in values else math.nan
                scope = f" in all {len(values)} classes"
                err = baseline_error(
                    shown, metric=check.metric, baseline_name=baseline_name, scope=scope
                )
                raise err.with_context(file=file, field_prefix=field_prefix)
            return
        baseline = reduce_per_class(baseline, None, check.reduce, info.higher_is_better)[0]
    if Thresholds.from_check(check).needs_baseline and unusable_baseline(baseline):
        err = baseline_error(baseline, metric=check.metric, baseline_name=baseline_name)
        raise err.with_context(file=file, field_prefix=field_prefix)


def decide_check(
    *,
    check: CheckSpec,
    info: MetricInfo,
    candidate: Value,
    baseline: Value | None,
    intervals: Mapping[str, Interval] | None = None,
) -> tuple[float, float | None, Decision, str | None]:
    """Reduce per-class values if needed, then apply the check's thresholds: to the
    value, or with ``intervals`` (per gated quantity) as ``check.decide`` says.

    Returns ``(value, baseline_value, decision, worst_class)``.
    """
    r = reduce_check(check, info, candidate, baseline)
    mode = check.decide if intervals else "point"
    decision = decide(
        Thresholds.from_check(check),
        r.value,
        r.compare_to,
        intervals=intervals,
        mode=mode,
        metric=check.metric,
    )
    return r.value, r.baseline_value, decision, r.worst_class


def mean_value(values: Sequence[Value]) -> Value:
    """The mean over runs of a scalar or of per-class values (class by class)."""
    if isinstance(values[0], dict):
        first = values[0]
        return {k: math.fsum(v[k] for v in values) / len(values) for k in first}  # type: ignore[index]
    return math.fsum(values) / len(values)  # type: ignore[arg-type]


def quantities(r: Reduced) -> dict[str, float]:
    """The gated quantities of a reduced value: ``value``, and ``drop``, ``increase``
    and ``ratio`` when it compares with a baseline."""
    if r.compare_to is None:
        return {"value": r.value}
    return gated_quantities(r.value, r.compare_to)


# -- statistics ---------------------------------------------------------------------------
def uses_statistics(check: CheckSpec, runs: int) -> bool:
    """Whether a gate has statistics: repeated runs, ``confidence`` or ``anova``."""
    return runs > 1 or check.confidence is not None or check.anova


def per_run(
    check: CheckSpec, info: MetricInfo, candidate: Sequence[Value], baseline: Sequence[Value] | None
) -> list[Reduced]:
    """Each run's reduced value, against the baseline run of the same seed when the
    baseline runs as often, else against the baseline's mean."""
    paired = baseline is not None and len(baseline) == len(candidate)
    base_mean = None if baseline is None else mean_value(baseline)
    return [
        reduce_check(check, info, v, baseline[r] if paired else base_mean)  # type: ignore[index]
        for r, v in enumerate(candidate)
    ]


def gate_statistics(
    check: CheckSpec,
    runs: Sequence[Reduced],
    *,
    seeds: Sequence[int],
    bootstrap: BootstrapResult | None = None,
    anova: Anova | None = None,
) -> GateStatistics:
    """The statistics of one gate from its runs (``per_run``): with ``runs_test`` a
    t-interval per gated quantity across the runs, else the ``bootstrap`` intervals
    when given; the runs' seeds and values, and the ``anova`` (informational)."""
    intervals: dict[str, Interval] = {}
    t_tests: list[RunTest] = []
    resamples = None
    if check.runs_test is not None and check.confidence is not None:
        t_tests = run_t_tests(check, runs)
        intervals = {t.quantity: t.interval for t in t_tests}
    elif bootstrap is not None:
        names = Thresholds.from_check(check).quantities()
        intervals = dict(zip(names, bootstrap.intervals, strict=True))
        resamples = bootstrap.resamples
    return GateStatistics(
        decide=check.decide,
        method="paired_t" if t_tests else "bootstrap" if intervals else "",
        intervals=intervals,
        resamples=resamples,
        seeds=list(seeds),
        run_values=[r.value for r in runs],
        t_tests=t_tests,
        anova=anova,
    )


def run_t_tests(check: CheckSpec, runs: Sequence[Reduced]) -> list[RunTest]:
    """A t-test across runs of the quantity each of the check's limits bounds."""
    from robustness_harness.stats import run_t_test  # scipy: not at import time

    assert check.confidence is not None
    return [
        run_t_test([quantities(r)[lim.quantity] for r in runs], lim, confidence=check.confidence)
        for lim in Thresholds.from_check(check).limits()
    ]


def bootstrap_statistic(
    check: CheckSpec,
    info: MetricInfo,
    candidate: Sequence[Resampled],
    baseline: Sequence[Resampled],
) -> CountsStatistic:
    """The ``paired_bootstrap`` statistic of a gate: image multiplicities (B, n) → its
    gated quantities (Q, B), candidate and baseline each the mean over their runs'
    resampled values (``baseline`` empty when there is none). A resample in which the
    value cannot be reduced (e.g. no class has ground truth) gives NaN."""
    names = Thresholds.from_check(check).quantities()

    def statistic(counts: np.ndarray) -> np.ndarray:
        cand = _mean_resampled([f(counts) for f in candidate])
        base = _mean_resampled([f(counts) for f in baseline]) if baseline else None
        rows = []
        for b in range(len(counts)):
            try:
                r = reduce_check(
                    check, info, _row(cand, b), None if base is None else _row(base, b)
                )
                q = quantities(r)
                rows.append([q.get(name, math.nan) for name in names])
            except HarnessError:  # e.g. no class with ground truth in this resample
                rows.append([math.nan] * len(names))
        return np.asarray(rows, dtype=np.float64).T

    return statistic


def anova_groups(
    check: CheckSpec,
    info: MetricInfo,
    baseline: tuple[str, Sequence[Value]],
    variants: Mapping[str, Sequence[Value]],
) -> dict[str, list[float]]:
    """Per-run values of each gated variant (against the baseline's runs unless the
    metric compares by itself), led by the baseline's own when they mean something
    (not for a metric that compares, nor for ``worst_drop``): the ANOVA's groups."""
    name, base = baseline
    groups: dict[str, list[float]] = {}
    if not info.compares_with_baseline and check.reduce != "worst_drop":
        groups[name] = [r.value for r in per_run(check, info, base, None)]
    ref = None if info.compares_with_baseline else base
    for variant, runs in variants.items():
        groups[variant] = [r.value for r in per_run(check, info, runs, ref)]
    return groups


def _mean_resampled(values: list[Any]) -> Any:
    """Mean over runs of resampled values: (B,) arrays, or dicts of (B,) arrays."""
    if isinstance(values[0], dict):
        return {k: np.mean([v[k] for v in values], axis=0) for k in values[0]}
    return np.mean(values, axis=0)


def _row(values: Any, b: int) -> Value:
    if isinstance(values, dict):
        return {k: float(v[b]) for k, v in values.items()}
    return float(values[b])

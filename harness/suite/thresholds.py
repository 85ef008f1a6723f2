"""Thresholds of a check and the pass/fail decision on a point estimate or an interval.

``decide: point`` judges the value itself; with a confidence interval of each gated
quantity, ``conservative`` fails unless the whole interval satisfies a limit and
``lenient`` fails only if the whole interval violates it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np

from robustness_harness.errors import HarnessError

REL_TOL = 1e-9
"""Comparisons allow this relative slack, so ``drop == drop_max`` passes despite rounding."""

REDUCTIONS = ("worst", "worst_drop", "mean")
DECIDE_MODES = ("point", "conservative", "lenient")
BASELINE_HINT = (
    "check the baseline model's output contract (detectors: boxes [x1, y1, x2, y2] in "
    "input pixels, model.labels; model.input normalisation), or gate with min/max instead"
)


class Limit(NamedTuple):
    """One threshold that is set: the ``quantity`` it bounds, its ``key`` and ``limit``,
    and whether it is an upper bound."""

    quantity: str
    key: str
    limit: float
    upper: bool


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval ``[low, high]`` at level ``confidence`` (e.g. 0.95)."""

    low: float
    high: float
    confidence: float

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def describe(self) -> str:
        """E.g. ``"95% CI [0.081, 0.143]"``."""
        return f"{_pct(self.confidence)}% CI [{_fmt(self.low)}, {_fmt(self.high)}]"


@dataclass(frozen=True)
class Thresholds:
    """The limits of one check; every limit that is set must hold.

    ``min``/``max`` bound the value, ``drop_max`` bounds ``baseline - value``,
    ``increase_max`` bounds ``value - baseline``, ``ratio_min``/``ratio_max`` bound
    ``value / baseline``. Equality passes.
    """

    min: float | None = None
    max: float | None = None
    drop_max: float | None = None
    increase_max: float | None = None
    ratio_min: float | None = None
    ratio_max: float | None = None

    @classmethod
    def from_check(cls, check: Any) -> Thresholds:
        """The thresholds of a ``CheckSpec`` (or anything with the six attributes)."""
        return cls(**{f.name: getattr(check, f.name) for f in fields(cls)})

    def set_items(self) -> list[tuple[str, float]]:
        """``(key, limit)`` for the limits that are set, sorted by key."""
        items = [(f.name, getattr(self, f.name)) for f in fields(self)]
        return sorted((k, v) for k, v in items if v is not None)

    def limits(self) -> list[Limit]:
        """The limits that are set: lower bounds first, then upper bounds."""
        spec = [
            ("value", "min", False),
            ("ratio", "ratio_min", False),
            ("value", "max", True),
            ("drop", "drop_max", True),
            ("increase", "increase_max", True),
            ("ratio", "ratio_max", True),
        ]
        return [
            Limit(q, key, getattr(self, key), upper)
            for q, key, upper in spec
            if getattr(self, key) is not None
        ]

    def quantities(self) -> list[str]:
        """The gated quantities (``value``, ``drop``, ``increase``, ``ratio``), in order."""
        return list(dict.fromkeys(limit.quantity for limit in self.limits()))

    @property
    def needs_baseline(self) -> bool:
        """Whether a limit compares against the baseline value."""
        relative = (self.drop_max, self.increase_max, self.ratio_min, self.ratio_max)
        return any(v is not None for v in relative)

    def describe(self) -> str:
        """E.g. ``"drop_max 0.02, min 0.5"``."""
        return ", ".join(f"{k} {_fmt(v)}" for k, v in self.set_items()) or "no thresholds"


@dataclass(frozen=True)
class Decision:
    """The outcome of ``decide``: pass/fail, why, and the derived quantities."""

    passed: bool
    violations: list[str] = field(default_factory=list)
    derived: dict[str, float] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """The violations joined by ``"; "`` (empty when passed)."""
        return "; ".join(self.violations)


def decide(
    thresholds: Thresholds,
    value: float,
    baseline: float | None = None,
    *,
    intervals: Mapping[str, Interval] | None = None,
    mode: str = "point",
    metric: str = "value",
    baseline_name: str | None = None,
) -> Decision:
    """Check ``value`` (and its baseline) against every threshold that is set.

    ``mode`` ``point`` compares the value (and drop, increase, ratio); ``conservative``
    and ``lenient`` compare ``intervals[quantity]`` instead (see the module doc). A NaN
    value always fails, as does an undefined (NaN) interval. Raises ``HarnessError``
    when a relative threshold is set but no baseline is given, or its baseline value is
    0 or NaN (``baseline_error``: ``metric`` and ``baseline_name`` name it), or an
    interval is missing.
    """
    if thresholds.needs_baseline and baseline is None:
        raise HarnessError(
            f"thresholds {thresholds.describe()} compare against a baseline, but none was given",
            hint="pass the baseline variant's value",
        )
    if thresholds.needs_baseline and unusable_baseline(baseline):
        raise baseline_error(baseline, metric=metric, baseline_name=baseline_name)
    if mode not in DECIDE_MODES:
        raise HarnessError(f"unknown decide mode {mode!r}", hint=f"use {', '.join(DECIDE_MODES)}")
    missing = [q for q in thresholds.quantities() if mode != "point" and q not in (intervals or {})]
    if missing:
        raise HarnessError(
            f"decide: {mode} needs a confidence interval of {', '.join(missing)}",
            hint="compute intervals with robustness_harness.stats (confidence: 0.95 on the check)",
        )
    derived = {} if baseline is None else gated_quantities(value, baseline)
    derived.pop("value", None)
    if math.isnan(value):
        violations = ["value is NaN (the metric could not be computed)"]
    else:
        violations = _violations(thresholds, value, derived, intervals or {}, mode)
    return Decision(passed=not violations, violations=violations, derived=derived)


def unusable_baseline(value: float | None) -> bool:
    """Whether relative gates against this baseline value prove nothing: 0 (a drop
    cannot happen, a ratio is undefined) or NaN (not computed)."""
    return value is not None and (value == 0 or math.isnan(value))


def baseline_error(
    value: float, *, metric: str = "value", baseline_name: str | None = None, scope: str = ""
) -> HarnessError:
    """The error for a relative gate against an unusable baseline, e.g. ``baseline
    'dense' has map 0.000: gates against it prove nothing``; ``scope`` follows the
    value (e.g. `` in all 6 classes``)."""
    who = f"baseline '{baseline_name}'" if baseline_name else "the baseline"
    return HarnessError(
        f"{who} has {metric} {value:.3f}{scope}: gates against it prove nothing",
        hint=BASELINE_HINT,
    )


def gated_quantities(value: Any, baseline: Any) -> dict[str, Any]:
    """``value``, ``drop``, ``increase`` and ``ratio`` of floats or numpy arrays.

    The ratio of a zero baseline is ``±inf`` (NaN when the value is 0 or NaN).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.divide(np.asarray(value, np.float64), np.asarray(baseline, np.float64))
    out = {"value": value, "drop": baseline - value, "increase": value - baseline, "ratio": ratio}
    if np.ndim(ratio) == 0:
        out = {k: float(v) for k, v in out.items()}
    return out


def _le(a: float, b: float) -> bool:
    """``a <= b`` up to ``REL_TOL`` (exact for infinities)."""
    if math.isinf(a) or math.isinf(b):
        return a <= b
    return a <= b + REL_TOL * max(1.0, abs(a), abs(b))


def _violations(
    th: Thresholds,
    value: float,
    derived: dict[str, float],
    intervals: Mapping[str, Interval],
    mode: str,
) -> list[str]:
    """Violated limits, lower bounds first, then upper bounds (``limits`` order)."""
    out: list[str] = []
    got = {"value": value, **derived}
    for lim in th.limits():
        if mode == "point":
            out += _point_violation(lim, got[lim.quantity])
        else:
            out += _interval_violation(lim, intervals[lim.quantity], mode)
    return out


def _satisfies(lim: Limit, x: float) -> bool:
    return _le(x, lim.limit) if lim.upper else _le(lim.limit, x)


def _point_violation(lim: Limit, got: float) -> list[str]:
    if _satisfies(lim, got):
        return []
    a, b = _fmt_pair(got, lim.limit)
    return [f"{lim.quantity} {a} {'>' if lim.upper else '<'} {lim.key} {b}"]


def _interval_violation(lim: Limit, ci: Interval, mode: str) -> list[str]:
    """Conservative: the whole interval must satisfy; lenient: fail only if all violates."""
    name = f"{lim.quantity} {_pct(ci.confidence)}% CI"
    if not ci.defined:
        return [f"{name} is undefined (NaN): the resampled metric could not be computed"]
    near, far = (ci.low, ci.high) if lim.upper else (ci.high, ci.low)
    decisive = far if mode == "conservative" else near
    if _satisfies(lim, decisive):
        return []
    a, b = _fmt_pair(decisive, lim.limit)
    lo, hi = (a, _fmt(ci.high)) if decisive == ci.low else (_fmt(ci.low), a)
    if mode == "conservative":
        return [f"{name} [{lo}, {hi}] not within {lim.key} {b} (decide: conservative)"]
    sign = ">" if lim.upper else "<"
    return [f"{name} [{lo}, {hi}] {sign} {lim.key} {b} (decide: lenient)"]


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _pct(confidence: float) -> str:
    return f"{100 * confidence:.10g}"


def _fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Format two different numbers with just enough digits to tell them apart."""
    for digits in range(3, 18):
        fa, fb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if fa != fb:
            return fa, fb
    return repr(a), repr(b)


def reduce_per_class(
    candidate: Mapping[str, float],
    baseline: Mapping[str, float] | None,
    how: str,
    higher_is_better: bool,
) -> tuple[float, str]:
    """Reduce per-class values to ``(value, worst_class)``.

    ``worst``: the worst class value (min, or max when lower is better); ``mean``: the
    mean over classes (``worst_class`` is still the worst one); ``worst_drop``: the
    largest ``baseline - candidate`` over classes (sign flipped when lower is better).
    Classes that are NaN (or, when ``baseline`` is given, NaN or missing there) are
    skipped; if none is left a ``HarnessError`` is raised.
    """
    if how not in REDUCTIONS:
        raise HarnessError(f"unknown reduce {how!r}", hint=f"use one of {', '.join(REDUCTIONS)}")
    if how == "worst_drop" and baseline is None:
        raise HarnessError(
            "reduce 'worst_drop' needs the baseline's per-class values",
            hint="pass the baseline variant's per-class values",
        )
    pairs = _usable_pairs(candidate, baseline)
    if not pairs:
        raise HarnessError(
            f"no class has a usable value to reduce ({len(candidate)} classes, all NaN)",
            hint="check that the evaluated images contain annotated objects",
        )
    sign = 1.0 if higher_is_better else -1.0
    if how == "worst_drop":
        drops = {c: sign * (b - v) for c, (v, b) in pairs.items()}
        worst = max(drops, key=drops.__getitem__)
        return drops[worst], worst
    values = {c: v for c, (v, _) in pairs.items()}
    worst = min(values, key=lambda c: sign * values[c])
    if how == "worst":
        return values[worst], worst
    return math.fsum(values.values()) / len(values), worst


def _usable_pairs(
    candidate: Mapping[str, float], baseline: Mapping[str, float] | None
) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for cls, raw in candidate.items():
        value = float(raw)
        base = float(baseline.get(cls, math.nan)) if baseline is not None else math.nan
        if math.isnan(value) or (baseline is not None and math.isnan(base)):
            continue
        out[cls] = (value, base)
    return out

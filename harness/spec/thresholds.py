"""Thresholds of a check and the pass/fail decision on a point estimate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from harness.errors import HarnessError

REL_TOL = 1e-9
"""Comparisons allow this relative slack, so ``drop == drop_max`` passes despite rounding."""

REDUCTIONS = ("worst", "worst_drop", "mean")


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


def decide(thresholds: Thresholds, value: float, baseline: float | None = None) -> Decision:
    """Check ``value`` (and its baseline) against every threshold that is set.

    A NaN value always fails; a ratio threshold with a zero baseline fails as undefined.
    Raises ``HarnessError`` when a relative threshold is set but no baseline is given.
    """
    if thresholds.needs_baseline and baseline is None:
        raise HarnessError(
            f"thresholds {thresholds.describe()} compare against a baseline, but none was given",
            hint="pass the baseline variant's value",
        )
    derived = _derived(value, baseline)
    if math.isnan(value):
        violations = ["value is NaN (the metric could not be computed)"]
    elif baseline is not None and math.isnan(baseline) and thresholds.needs_baseline:
        violations = ["baseline value is NaN (the metric could not be computed)"]
    else:
        violations = _violations(thresholds, value, baseline, derived)
    return Decision(passed=not violations, violations=violations, derived=derived)


def _derived(value: float, baseline: float | None) -> dict[str, float]:
    if baseline is None:
        return {}
    if baseline == 0:
        ratio = math.nan if value == 0 or math.isnan(value) else math.copysign(math.inf, value)
    else:
        ratio = value / baseline
    return {"drop": baseline - value, "increase": value - baseline, "ratio": ratio}


def _le(a: float, b: float) -> bool:
    """``a <= b`` up to ``REL_TOL`` (exact for infinities)."""
    if math.isinf(a) or math.isinf(b):
        return a <= b
    return a <= b + REL_TOL * max(1.0, abs(a), abs(b))


def _violations(
    th: Thresholds, value: float, baseline: float | None, derived: dict[str, float]
) -> list[str]:
    out: list[str] = []
    upper = [("value", value, "max", th.max)]
    lower = [("value", value, "min", th.min)]
    if baseline is not None:
        upper += [
            ("drop", derived["drop"], "drop_max", th.drop_max),
            ("increase", derived["increase"], "increase_max", th.increase_max),
        ]
        if baseline == 0:
            for key in ("ratio_min", "ratio_max"):
                limit = getattr(th, key)
                if limit is not None:
                    out.append(f"ratio undefined: baseline value is 0 ({key} {_fmt(limit)})")
        else:
            upper.append(("ratio", derived["ratio"], "ratio_max", th.ratio_max))
            lower.append(("ratio", derived["ratio"], "ratio_min", th.ratio_min))
    for name, got, key, limit in lower:
        if limit is not None and not _le(limit, got):
            a, b = _fmt_pair(got, limit)
            out.append(f"{name} {a} < {key} {b}")
    for name, got, key, limit in upper:
        if limit is not None and not _le(got, limit):
            a, b = _fmt_pair(got, limit)
            out.append(f"{name} {a} > {key} {b}")
    return out


def _fmt(x: float) -> str:
    return f"{x:.3g}"


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

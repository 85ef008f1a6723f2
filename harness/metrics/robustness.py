"""Corruption robustness metrics over a ``CorruptionGrid``: mPC, rPC, CE and mCE.

With P the clean score and v_cs the score under corruption c at severity s
(DESIGN.md section 4):

* mPC = mean over corruptions × severities of v_cs;
* rPC = mPC / P (NaN when P is 0);
* CE_c = Σ_s (1 − v_cs) / Σ_s (1 − v_cs of the baseline); 1.0 for the baseline itself;
* mCE = mean over corruptions of CE_c.

Every metric takes ``family`` to restrict the grid to one family's corruptions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from robustness_harness.metrics.base import MetricResult
from robustness_harness.metrics.context import CorruptionGrid
from robustness_harness.perturb.corruptions import FAMILIES
from robustness_harness.registry import register_metric

__all__ = [
    "by_severity",
    "ce",
    "corruption_error",
    "corruption_errors",
    "mce",
    "mean_corruption_error",
    "mean_pc",
    "mpc",
    "relative_pc",
    "rpc",
    "select_corruptions",
]

Values = Mapping[tuple[str, int], float]


# ---------------------------------------------------------------- formulas


def mean_pc(values: Values, corruptions: Iterable[str] | None = None) -> float:
    """mPC: the mean of ``values[(c, s)]`` over the given corruptions (default all) and
    every severity present; NaN when nothing is selected."""
    keep = None if corruptions is None else set(corruptions)
    scores = [v for (c, _), v in values.items() if keep is None or c in keep]
    return math.fsum(scores) / len(scores) if scores else math.nan


def relative_pc(mpc_value: float, clean: float) -> float:
    """rPC = mPC / P; NaN when the clean score P is 0."""
    return mpc_value / clean if clean != 0 else math.nan


def corruption_error(candidate: Mapping[int, float], baseline: Mapping[int, float]) -> float:
    """CE_c = Σ_s (1 − candidate[s]) / Σ_s (1 − baseline[s]) over the candidate's severities.

    Both errors 0 gives 1.0 (equal); only the baseline's 0 gives ``inf``. A severity the
    baseline lacks is a ``ValueError``.
    """
    missing = sorted(set(candidate) - set(baseline))
    if missing:
        raise ValueError(f"the baseline has no scores at severities {missing}")
    errors = math.fsum(1.0 - v for v in candidate.values())
    base_errors = math.fsum(1.0 - baseline[s] for s in candidate)
    if base_errors == 0:
        return 1.0 if errors == 0 else math.inf
    return errors / base_errors


def mean_corruption_error(errors: Iterable[float]) -> float:
    """mCE: the mean of per-corruption CEs; NaN for none."""
    values = list(errors)
    return math.fsum(values) / len(values) if values else math.nan


def by_severity(values: Values, corruption: str) -> dict[int, float]:
    """``{severity: score}`` of one corruption."""
    return {s: v for (c, s), v in values.items() if c == corruption}


def corruption_errors(grid: CorruptionGrid, corruptions: Sequence[str]) -> dict[str, float]:
    """CE_c of each corruption; all 1.0 when ``grid`` is the baseline's own grid."""
    if grid.baseline is None:
        return dict.fromkeys(corruptions, 1.0)
    errors = {}
    for c in corruptions:
        try:
            errors[c] = corruption_error(
                by_severity(grid.values, c), by_severity(grid.baseline.values, c)
            )
        except ValueError as exc:
            raise ValueError(f"corruption error of {c!r}: {exc}") from None
    return errors


def select_corruptions(grid: CorruptionGrid, family: str | None) -> list[str]:
    """The grid's corruptions, or those of ``family`` (``ValueError`` if unknown or absent)."""
    corruptions = grid.corruptions
    if family is None:
        return corruptions
    present = list(dict.fromkeys(f for c in corruptions if (f := grid.families.get(c))))
    known = list(dict.fromkeys([*FAMILIES, *present]))
    if family not in known:
        raise ValueError(f"unknown corruption family {family!r}; valid: {', '.join(known)}")
    chosen = [c for c in corruptions if grid.families.get(c) == family]
    if not chosen:
        have = ", ".join(present) or "none"
        raise ValueError(f"the grid has no corruption of family {family!r}; it has {have}")
    return chosen


# ------------------------------------------------------------------ details


def _table(values: Values, corruptions: Sequence[str]) -> dict[str, dict[str, float]]:
    return {c: {str(s): v for s, v in sorted(by_severity(values, c).items())} for c in corruptions}


def _families(grid: CorruptionGrid, corruptions: Sequence[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for c in corruptions:
        groups.setdefault(grid.families.get(c, "unknown"), []).append(c)
    return groups


def _details(grid: CorruptionGrid, corruptions: Sequence[str], family: str | None) -> dict:
    """Clean score, per-family mPC/rPC/mCE, per-corruption mean and CE, full table."""
    errors = corruption_errors(grid, corruptions)
    per_family = {}
    for fam, names in _families(grid, corruptions).items():
        fam_mpc = mean_pc(grid.values, names)
        per_family[fam] = {
            "mpc": fam_mpc,
            "rpc": relative_pc(fam_mpc, grid.clean),
            "mce": mean_corruption_error(errors[c] for c in names),
        }
    details: dict[str, Any] = {
        "clean": grid.clean,
        "family": family,
        "per_family": per_family,
        "per_corruption": {c: mean_pc(grid.values, [c]) for c in corruptions},
        "per_corruption_ce": errors,
        "table": _table(grid.values, corruptions),
        "is_baseline": grid.baseline is None,
    }
    if grid.baseline is not None:
        details["baseline_table"] = _table(grid.baseline.values, corruptions)
    return details


# ------------------------------------------------------------------ metrics


@register_metric("mpc", task="any", inputs="corruption_grid", higher_is_better=True)
def mpc(grid: CorruptionGrid, *, family: str | None = None) -> MetricResult:
    """Mean performance under corruption (mean over corruptions × severities)."""
    corruptions = select_corruptions(grid, family)
    return MetricResult(mean_pc(grid.values, corruptions), _details(grid, corruptions, family))


@register_metric("rpc", task="any", inputs="corruption_grid", higher_is_better=True)
def rpc(grid: CorruptionGrid, *, family: str | None = None) -> MetricResult:
    """Relative performance under corruption: mPC / clean score."""
    corruptions = select_corruptions(grid, family)
    value = relative_pc(mean_pc(grid.values, corruptions), grid.clean)
    return MetricResult(value, _details(grid, corruptions, family))


@register_metric("mce", task="any", inputs="corruption_grid", higher_is_better=False, compares=True)
def mce(grid: CorruptionGrid, *, family: str | None = None) -> MetricResult:
    """Mean corruption error relative to the baseline (1.0 for the baseline itself)."""
    corruptions = select_corruptions(grid, family)
    value = mean_corruption_error(corruption_errors(grid, corruptions).values())
    return MetricResult(value, _details(grid, corruptions, family))


@register_metric("ce", task="any", inputs="corruption_grid", higher_is_better=False, compares=True)
def ce(grid: CorruptionGrid, *, corruption: str, family: str | None = None) -> MetricResult:
    """Corruption error of one corruption relative to the baseline."""
    corruptions = select_corruptions(grid, family)
    if corruption not in corruptions:
        where = f"family {family!r} of " if family else ""
        raise ValueError(
            f"corruption {corruption!r} is not in {where}the grid; it has {', '.join(corruptions)}"
        )
    value = corruption_errors(grid, [corruption])[corruption]
    return MetricResult(value, _details(grid, [corruption], family))

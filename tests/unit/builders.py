"""Shared builders for the unit tests: a decided gate outcome and a minimal suite text."""

from __future__ import annotations

from typing import Any

from robustness_harness.checks import CheckOutcome, GateStatistics, decide_check
from robustness_harness.metrics import METRICS
from robustness_harness.spec import CheckSpec, Thresholds

# A suite with variants ``dense`` (the baseline) and ``small`` (pruned by the fake
# ``_test_prune`` of the ``spec_registries`` fixture) and no checks yet: append indented
# check lines after the final ``checks:``.
MINIMAL_SUITE = """\
suite: s
model: {name: toydrive-fcos}
data: {name: toydrive}
baseline: dense
variants:
  dense: {}
  small: {compress: [{prune: {method: _test_prune, sparsity: 0.5}}]}
checks:
"""


def decided_outcome(
    check: CheckSpec,
    candidate: Any,
    baseline: Any,
    *,
    variant: str = "v",
    name: str = "c",
    n_images: int = 400,
    statistics: GateStatistics | None = None,
    **extra: Any,
) -> CheckOutcome:
    """The outcome of gate ``name`` of suite ``s`` (baseline variant ``dense``, seed 0),
    decided by ``decide_check`` from ``candidate`` and ``baseline`` values."""
    value, base_value, decision, worst = decide_check(
        check=check, info=METRICS.get(check.metric), candidate=candidate, baseline=baseline
    )
    return CheckOutcome(
        suite="s",
        variant=variant,
        check=name,
        metric=check.metric,
        value=value,
        baseline_value=base_value,
        decision=decision,
        thresholds=Thresholds.from_check(check),
        baseline_variant="dense",
        n_images=n_images,
        seed=0,
        worst_class=worst,
        per_class=candidate if isinstance(candidate, dict) else None,
        baseline_per_class=baseline if isinstance(baseline, dict) else None,
        extra={"reduce": check.reduce or "", **extra},
        statistics=statistics,
    )

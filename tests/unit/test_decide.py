"""Deciding a gate without a session: measurements, check spec, baseline info → outcome."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robustness_harness.errors import HarnessError
from robustness_harness.metrics import METRICS
from robustness_harness.run.decide import (
    Gate,
    GateMeasurements,
    Measurement,
    anova_groups,
    bootstrap_statistic,
    decide_gate,
    gate_statistics,
    per_run,
    uses_statistics,
)
from robustness_harness.run.outcome import CheckOutcome
from robustness_harness.run.snapshots import COMPARED_STAMPS, SnapshotRef
from robustness_harness.stats import paired_bootstrap
from robustness_harness.suite import CheckSpec

GATE = Gate("s", "pruned", "c", "dense", file="s.yaml")
STAMPS = {name: "1" for name in COMPARED_STAMPS}


def _check(**kw: Any) -> CheckSpec:
    return CheckSpec.model_validate(kw)


def _runs(*values: Any, n: int = 100, **kw: Any) -> list[Measurement]:
    return [Measurement(v, n, **kw) for v in values]


def _decide(
    check: CheckSpec,
    cand: list[Measurement],
    base: list[Measurement] | None = None,
    *,
    snapshot: SnapshotRef | None = None,
    **measured: Any,
) -> CheckOutcome:
    gate_measurements = GateMeasurements(cand, base, seed=7, **measured)
    return decide_gate(GATE, check, METRICS.get(check.metric), gate_measurements, snapshot)


def test_relative_threshold_passes_and_fails() -> None:
    check = _check(metric="map", drop_max=0.02)
    ok = _decide(check, _runs(0.49, note="n", details={"k": 1}), _runs(0.5, details={"b": 2}))
    assert ok.passed and ok.value == 0.49 and ok.baseline_value == 0.5
    assert (ok.suite, ok.variant, ok.check, ok.seed, ok.n_images) == ("s", "pruned", "c", 7, 100)
    assert ok.extra == {
        "reduce": "",
        "note": "n",
        "details": {"k": 1},
        "baseline_details": {"b": 2},
        "snapshot": {},
    }
    bad = _decide(check, _runs(0.4), _runs(0.5))
    assert not bad.passed
    assert bad.decision.violations == ["drop 0.1 > drop_max 0.02"]
    assert bad.decision.derived["drop"] == pytest.approx(0.1)


def test_ratio_and_increase_thresholds_of_a_lower_is_better_metric() -> None:
    check = _check(metric="ece", increase_max=0.01, ratio_max=1.5)
    assert _decide(check, _runs(0.105), _runs(0.1)).passed
    out = _decide(check, _runs(0.2), _runs(0.1))
    assert [v.split()[-2] for v in out.decision.violations] == ["increase_max", "ratio_max"]


def test_absolute_thresholds_need_no_baseline() -> None:
    check = _check(metric="map", min=0.5)
    assert _decide(check, _runs(0.6)).passed
    out = _decide(check, _runs(0.4))
    assert not out.passed and out.baseline_value is None
    assert out.decision.violations == ["value 0.4 < min 0.5"]


def test_the_value_is_the_mean_over_runs() -> None:
    check = _check(metric="map", drop_max=0.05)
    out = _decide(check, _runs(0.4, 0.5, 0.6), _runs(0.5, 0.52))
    assert out.value == pytest.approx(0.5) and out.baseline_value == pytest.approx(0.51)


def test_per_class_worst_drop_names_the_class() -> None:
    check = _check(metric="per_class_ap", reduce="worst_drop", max=0.08)
    base = {"car": 0.8, "train": 0.431, "bus": 0.6}
    cand = {"car": 0.79, "train": 0.319, "bus": 0.58}
    out = _decide(check, _runs(cand), _runs(base))
    assert not out.passed and out.worst_class == "train"
    assert out.per_class == cand and out.baseline_per_class == base
    assert out.value == pytest.approx(0.112) and out.baseline_value is None


def test_nan_value_fails_and_unusable_baselines_are_located_errors() -> None:
    nan = _decide(_check(metric="map", min=0.1), _runs(math.nan))
    assert not nan.passed and "NaN" in nan.decision.violations[0]
    with pytest.raises(HarnessError) as err:
        _decide(_check(metric="map", drop_max=0.02), _runs(0.4), _runs(0.0))
    assert (err.value.file, err.value.field) == ("s.yaml", "checks.c")
    assert "baseline 'dense' has map 0.000" in err.value.message
    worst_drop = _check(metric="per_class_ap", reduce="worst_drop", max=0.1)
    with pytest.raises(HarnessError, match="in all 2 classes"):
        _decide(worst_drop, _runs({"a": 0.1, "b": 0.2}), _runs({"a": 0.0, "b": math.nan}))
    with pytest.raises(HarnessError, match="compare against a baseline"):
        _decide(_check(metric="map", drop_max=0.02), _runs(0.4))


def _interval_check(decide: str) -> CheckSpec:
    return _check(metric="map", drop_max=0.05, confidence=0.9, decide=decide)


def test_interval_decisions_conservative_and_lenient() -> None:
    """A bootstrap interval of the drop straddles drop_max: conservative fails, lenient
    passes (the point estimate alone would pass)."""
    drops = np.array([0.0, 0.01, 0.02, 0.03, 0.04, 0.1, 0.11, 0.12])  # per image, mean 0.05
    boot = paired_bootstrap(
        lambda counts: (counts @ drops / counts.sum(axis=1))[None, :],
        len(drops),
        confidence=0.9,
        resamples=200,
        seed=0,
    )
    info = METRICS.get("map")

    def decided(mode: str) -> CheckOutcome:
        check = _interval_check(mode)
        runs = per_run(check, info, [0.46], [0.5])
        stats = gate_statistics(check, runs, seeds=[0], bootstrap=boot)
        return _decide(check, _runs(0.46), _runs(0.5), statistics=stats)

    conservative, lenient = decided("conservative"), decided("lenient")
    assert conservative.statistics is not None and conservative.statistics.method == "bootstrap"
    ci = conservative.statistics.intervals["drop"]
    assert ci.low < 0.05 < ci.high and conservative.statistics.resamples == 200
    assert not conservative.passed and "decide: conservative" in conservative.decision.message
    assert lenient.passed and "90% CI of drop" in lenient.context_line()


def test_t_tests_across_runs() -> None:
    check = _check(
        metric="map", drop_max=0.05, confidence=0.95, runs_test="paired_t", decide="lenient"
    )
    info = METRICS.get("map")
    runs = per_run(check, info, [0.48, 0.47, 0.49], [0.5, 0.5, 0.5])
    assert [r.compare_to for r in runs] == [0.5, 0.5, 0.5]
    stats = gate_statistics(check, runs, seeds=[0, 1, 2])
    assert stats.method == "paired_t" and stats.runs == 3 and stats.seeds == [0, 1, 2]
    (t,) = stats.t_tests
    assert t.quantity == "drop" and stats.intervals["drop"] is t.interval
    assert t.interval.low < 0.02 < t.interval.high
    out = _decide(check, _runs(0.48, 0.47, 0.49), _runs(0.5, 0.5, 0.5), statistics=stats)
    assert out.passed and "paired t over 3 runs" in out.context_line()


def test_statistics_are_used_only_when_asked_for() -> None:
    assert not uses_statistics(_check(metric="map", min=0.1), 1)
    assert uses_statistics(_check(metric="map", min=0.1), 2)
    assert uses_statistics(_check(metric="map", min=0.1, confidence=0.9), 1)
    stats = gate_statistics(
        _check(metric="map", min=0.1),
        per_run(_check(metric="map", min=0.1), METRICS.get("map"), [0.2, 0.4], None),
        seeds=[0, 1],
    )
    assert stats.method == "" and stats.run_values == [0.2, 0.4] and stats.intervals == {}


def test_per_run_pairs_runs_of_the_same_seed_else_the_baseline_mean() -> None:
    check, info = _check(metric="map", drop_max=0.1), METRICS.get("map")
    assert [r.compare_to for r in per_run(check, info, [0.4, 0.5], [0.6, 0.8])] == [0.6, 0.8]
    assert [r.compare_to for r in per_run(check, info, [0.4, 0.5], [0.6])] == [0.6, 0.6]


def test_bootstrap_statistic_reduces_each_resample() -> None:
    """Candidate and baseline resampled values (mean over runs) → the gated drop; a
    resample that cannot be reduced gives NaN."""
    check = _check(metric="per_class_ap", reduce="worst_drop", max=0.1, confidence=0.9)
    info = METRICS.get("per_class_ap")

    def values(a: list[float], b: list[float]) -> Any:
        return lambda counts: {"a": np.array(a[: len(counts)]), "b": np.array(b[: len(counts)])}

    statistic = bootstrap_statistic(
        check,
        info,
        [values([0.5, 0.4, math.nan], [0.3, 0.3, math.nan])],
        [values([0.6, 0.6, math.nan], [0.3, 0.5, math.nan])],
    )
    out = statistic(np.ones((3, 4)))
    assert out.shape == (1, 3)
    assert out[0, :2] == pytest.approx([0.1, 0.2]) and math.isnan(out[0, 2])


def test_anova_groups_lead_with_the_baseline_unless_the_metric_compares() -> None:
    check, info = _check(metric="map", drop_max=0.1, anova=True), METRICS.get("map")
    groups = anova_groups(check, info, ("dense", [0.5, 0.6]), {"p": [0.4, 0.45]})
    assert groups == {"dense": [0.5, 0.6], "p": [0.4, 0.45]}
    flips = _check(metric="flip_rate", max=0.1, anova=True)
    assert anova_groups(flips, METRICS.get("flip_rate"), ("dense", [0.0]), {"p": [0.1, 0.2]}) == {
        "p": [0.1, 0.2]
    }


def _snapshot(entry: dict[str, Any] | None, *, regen: bool = False) -> SnapshotRef:
    return SnapshotRef(
        Path("b.json"),
        "map",
        STAMPS,
        regen=regen,
        entry=entry,
        tolerance=0.01,
        where="pruned::c in b.json",
    )


def test_snapshot_comparison_adds_violations() -> None:
    check = _check(metric="map", min=0.1, baseline="snapshot", tolerance=0.01)
    close = _decide(check, _runs(0.5), snapshot=_snapshot({"value": 0.505, "stamps": STAMPS}))
    assert close.passed
    assert close.extra["snapshot"] == {
        "path": "b.json",
        "recorded": False,
        "value": 0.505,
        "tolerance": 0.01,
    }
    moved = _decide(check, _runs(0.5), snapshot=_snapshot({"value": 0.6, "stamps": STAMPS}))
    assert not moved.passed and "changed by -0.1 > tolerance 0.01" in moved.decision.message
    missing = _decide(check, _runs(0.5), snapshot=_snapshot(None))
    assert not missing.passed and "snapshot missing" in missing.decision.message
    other = {"value": 0.5, "stamps": {**STAMPS, "torch": "2"}}
    assert "torch 2 -> 1" in _decide(check, _runs(0.5), snapshot=_snapshot(other)).decision.message


def test_a_regenerated_snapshot_is_shown_as_recorded() -> None:
    out = _decide(_check(metric="map", min=0.1), _runs(0.5), snapshot=_snapshot(None, regen=True))
    assert out.passed
    assert out.extra["snapshot"] == {"path": "b.json", "recorded": True, "value": 0.5}

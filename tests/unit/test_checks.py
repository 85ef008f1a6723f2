"""Gate decisions and the failure message format (DESIGN §1)."""

from __future__ import annotations

import math

from robustness_harness.run.outcome import metric_label
from robustness_harness.suite.schema import CheckSpec
from tests.unit.builders import decided_outcome


def _check(**kw: object) -> CheckSpec:
    return CheckSpec.model_validate(kw)


def test_worst_drop_message_names_class_and_threshold() -> None:
    check = _check(metric="per_class_ap", reduce="worst_drop", max=0.08)
    base = {"car": 0.80, "train": 0.431, "bus": 0.6}
    cand = {"car": 0.79, "train": 0.319, "bus": 0.58}
    out = decided_outcome(check, cand, base)
    assert not out.passed
    assert math.isclose(out.value, 0.112)
    assert out.worst_class == "train"
    assert out.message().splitlines() == [
        "worst per-class AP drop 0.112 (class 'train': 0.431 -> 0.319) > max 0.08",
        "baseline 'dense' | 400 images | seed 0",
    ]


def test_scalar_drop_passes_and_fails() -> None:
    check = _check(metric="map", drop_max=0.02)
    ok = decided_outcome(check, 0.49, 0.5)
    bad = decided_outcome(check, 0.40, 0.5)
    assert ok.passed and not bad.passed
    assert bad.headline() == "mAP 0.400 (baseline 0.500) drop 0.1 > drop_max 0.02"
    assert ok.headline().endswith("within drop_max 0.02")


def test_worst_reduce_compares_worst_classes() -> None:
    check = _check(metric="per_class_ap", reduce="worst", drop_max=0.05)
    out = decided_outcome(check, {"a": 0.5, "b": 0.3}, {"a": 0.6, "b": 0.4})
    assert out.value == 0.3 and out.baseline_value == 0.4 and not out.passed


def test_properties_for_junit() -> None:
    out = decided_outcome(_check(metric="map", min=0.5), 0.6, None)
    props = out.properties()
    assert props["harness_metric"] == "map" and props["harness_value"] == 0.6
    assert props["harness_passed"] is True and props["harness_threshold"] == "min 0.5"


def test_metric_label() -> None:
    assert metric_label("per_class_ap50") == "AP50"
    assert metric_label("map") == "mAP"
    assert metric_label("ap75") == "ap75"
    assert metric_label("per_class_ap") == "AP"
    assert metric_label("per_class_accuracy") == "accuracy"


def _baseline_error(check: CheckSpec, baseline: object) -> str:
    from robustness_harness.errors import HarnessError
    from robustness_harness.metrics import METRICS
    from robustness_harness.run.decide import check_baseline

    try:
        check_baseline(
            check, METRICS.get(check.metric), baseline, baseline_name="dense", file="s.yaml"
        )
    except HarnessError as err:
        return str(err)
    return ""


def test_gates_against_a_zero_or_nan_baseline_are_errors() -> None:
    drop = _check(metric="map", drop_max=0.02)
    assert _baseline_error(drop, 0.0).startswith(
        "s.yaml: baseline 'dense' has map 0.000: gates against it prove nothing (fix: "
    )
    assert "has map nan: gates" in _baseline_error(drop, math.nan)
    assert _baseline_error(drop, 0.4) == ""
    assert _baseline_error(_check(metric="map", min=0.1), 0.0) == ""  # absolute: judged


def test_per_class_baseline_errors_only_when_every_class_is_zero_or_nan() -> None:
    worst_drop = _check(metric="per_class_ap", reduce="worst_drop", max=0.08)
    text = _baseline_error(worst_drop, {"car": 0.0, "bus": math.nan})
    assert "baseline 'dense' has per_class_ap 0.000 in all 2 classes: gates" in text
    assert _baseline_error(worst_drop, {"car": 0.5, "bus": math.nan}) == ""  # NaN skipped
    worst = _check(metric="per_class_ap", reduce="worst", drop_max=0.05)
    assert "has per_class_ap 0.000:" in _baseline_error(worst, {"a": 0.0, "b": 0.3})

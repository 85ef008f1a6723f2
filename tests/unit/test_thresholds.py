"""Thresholds, point decisions and per-class reductions on hand-computed numbers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from robustness_harness.errors import HarnessError
from robustness_harness.suite import Decision, Thresholds, decide, reduce_per_class
from robustness_harness.suite.thresholds import Interval, gated_quantities

NAN = math.nan


def test_describe_and_needs_baseline() -> None:
    assert Thresholds(min=0.5, drop_max=0.02).describe() == "drop_max 0.02, min 0.5"
    assert Thresholds().describe() == "no thresholds"
    assert not Thresholds(min=0.5, max=0.9).needs_baseline
    for key in ("drop_max", "increase_max", "ratio_min", "ratio_max"):
        assert Thresholds(**{key: 1.0}).needs_baseline


def test_from_check() -> None:
    check = SimpleNamespace(
        min=0.1, max=None, drop_max=0.02, increase_max=None, ratio_min=0.9, ratio_max=None
    )
    assert Thresholds.from_check(check) == Thresholds(min=0.1, drop_max=0.02, ratio_min=0.9)


@pytest.mark.parametrize(
    ("limits", "value", "baseline", "violation"),
    [
        ({"min": 0.5}, 0.6, None, None),
        ({"min": 0.5}, 0.5, None, None),
        ({"min": 0.5}, 0.4, None, "value 0.4 < min 0.5"),
        ({"max": 0.08}, 0.05, None, None),
        ({"max": 0.08}, 0.08, None, None),
        ({"max": 0.08}, 0.1, None, "value 0.1 > max 0.08"),
        ({"drop_max": 0.08}, 0.4, 0.431, None),
        ({"drop_max": 0.08}, 0.319, 0.431, "drop 0.112 > drop_max 0.08"),
        ({"drop_max": 0.02}, 0.48, 0.5, None),  # 0.5 - 0.48 is 0.020000000000000018
        ({"drop_max": 0.02}, 0.6, 0.5, None),  # improvements never violate drop_max
        ({"increase_max": 0.01}, 0.105, 0.1, None),
        ({"increase_max": 0.01}, 0.11, 0.1, None),
        ({"increase_max": 0.01}, 0.12, 0.1, "increase 0.02 > increase_max 0.01"),
        ({"ratio_min": 0.95}, 0.96, 1.0, None),
        ({"ratio_min": 0.95}, 0.95, 1.0, None),
        ({"ratio_min": 0.95}, 0.9, 1.0, "ratio 0.9 < ratio_min 0.95"),
        ({"ratio_max": 0.7}, 6.0, 10.0, None),
        ({"ratio_max": 0.7}, 7.0, 10.0, None),
        ({"ratio_max": 0.7}, 8.0, 10.0, "ratio 0.8 > ratio_max 0.7"),
        ({"drop_max": 0.02}, 0.4799999, 0.5, "drop 0.0200001 > drop_max 0.02"),
    ],
)
def test_decide_each_key(
    limits: dict[str, float], value: float, baseline: float | None, violation: str | None
) -> None:
    decision = decide(Thresholds(**limits), value, baseline)
    assert isinstance(decision, Decision)
    assert decision.passed is (violation is None)
    assert decision.violations == ([] if violation is None else [violation])
    assert decision.message == (violation or "")


def test_decide_lists_every_violation() -> None:
    decision = decide(Thresholds(min=0.5, drop_max=0.02, ratio_min=0.99), 0.4, 0.6)
    assert not decision.passed
    assert decision.violations == [
        "value 0.4 < min 0.5",
        "ratio 0.667 < ratio_min 0.99",
        "drop 0.2 > drop_max 0.02",
    ]


def test_derived_values() -> None:
    decision = decide(Thresholds(min=0.0), 0.3, 0.4)
    assert decision.derived == pytest.approx({"drop": 0.1, "increase": -0.1, "ratio": 0.75})
    assert decide(Thresholds(min=0.0), 0.3).derived == {}


def test_nan_value_always_fails() -> None:
    for limits in ({"min": 0.0}, {"max": 1.0}, {"drop_max": 1.0}, {"ratio_min": 0.0}):
        baseline = 0.5 if Thresholds(**limits).needs_baseline else None
        decision = decide(Thresholds(**limits), NAN, baseline)
        assert not decision.passed
        assert decision.violations == ["value is NaN (the metric could not be computed)"]


@pytest.mark.parametrize("baseline", [0.0, NAN])
@pytest.mark.parametrize("key", ["drop_max", "increase_max", "ratio_min", "ratio_max"])
def test_relative_gate_against_zero_or_nan_baseline_is_an_error(key: str, baseline: float) -> None:
    """A baseline that scored 0 (or nothing) makes every drop gate pass: an error."""
    with pytest.raises(HarnessError) as err:
        decide(Thresholds(**{key: 0.1}), 0.0, baseline, metric="map", baseline_name="dense")
    shown = "0.000" if baseline == 0 else "nan"
    assert str(err.value).startswith(
        f"baseline 'dense' has map {shown}: gates against it prove nothing (fix: check the "
        "baseline model's output contract"
    )


@pytest.mark.parametrize("baseline", [0.0, NAN])
def test_absolute_thresholds_still_judge_a_zero_or_nan_baseline(baseline: float) -> None:
    assert decide(Thresholds(min=0.1), 0.5, baseline).passed
    assert not decide(Thresholds(min=0.1), 0.0, baseline).passed
    assert decide(Thresholds(max=0.1), 0.0, baseline).passed


@pytest.mark.parametrize(("value", "ratio"), [(0.5, math.inf), (-0.5, -math.inf), (0.0, NAN)])
def test_ratio_with_zero_baseline(value: float, ratio: float) -> None:
    got = gated_quantities(value, 0.0)["ratio"]
    assert (math.isnan(got) and math.isnan(ratio)) or got == ratio
    with pytest.raises(HarnessError, match=r"the baseline has value 0\.000: gates against it"):
        decide(Thresholds(ratio_min=0.9, ratio_max=1.1), value, 0.0)


def test_infinite_value_is_compared_exactly() -> None:
    assert not decide(Thresholds(max=1e9), math.inf).passed
    assert decide(Thresholds(min=0.0), math.inf).passed


def test_exception_relative_threshold_without_baseline() -> None:
    with pytest.raises(HarnessError, match="compare against a baseline"):
        decide(Thresholds(drop_max=0.02), 0.5)


@given(
    value=st.floats(0, 1),
    baseline=st.floats(0, 1, exclude_min=True),  # a zero baseline is an error (see above)
    limit=st.floats(0, 1),
)
def test_drop_max_passes_iff_drop_within_limit(value: float, baseline: float, limit: float) -> None:
    drop = baseline - value
    assume(not limit < drop <= limit + 1e-6)  # the rounding tolerance band
    decision = decide(Thresholds(drop_max=limit), value, baseline)
    assert decision.passed is (drop <= limit)
    assert decision.derived["drop"] == drop


@given(value=st.floats(-1e6, 1e6), limit=st.floats(-1e6, 1e6))
def test_min_and_max_are_mirror_images(value: float, limit: float) -> None:
    assume(abs(value - limit) > 1e-3)
    assert decide(Thresholds(min=limit), value).passed is (value >= limit)
    assert decide(Thresholds(max=limit), value).passed is (value <= limit)


# ----------------------------------------------------------------------------- per class
CAND = {"car": 0.6, "person": 0.4, "train": 0.319}
BASE = {"car": 0.62, "person": 0.45, "train": 0.431}


@pytest.mark.parametrize(
    ("how", "higher", "baseline", "expected"),
    [
        ("worst", True, None, (0.319, "train")),
        ("worst", False, None, (0.6, "car")),
        ("mean", True, None, ((0.6 + 0.4 + 0.319) / 3, "train")),
        ("mean", False, None, ((0.6 + 0.4 + 0.319) / 3, "car")),
        ("worst_drop", True, BASE, (0.112, "train")),
        ("worst_drop", False, BASE, (-0.02, "car")),
    ],
)
def test_reduce_per_class(
    how: str, higher: bool, baseline: dict[str, float] | None, expected: tuple[float, str]
) -> None:
    value, worst = reduce_per_class(CAND, baseline, how, higher)
    assert (value, worst) == (pytest.approx(expected[0]), expected[1])


def test_reduce_skips_nan_classes() -> None:
    cand = {"a": NAN, "b": 0.5, "c": 0.2, "d": 0.9}
    base = {"a": 0.9, "b": 0.6, "c": NAN}  # "d" is missing in the baseline
    assert reduce_per_class(cand, None, "worst", True) == (0.2, "c")
    assert reduce_per_class(cand, None, "mean", True) == (pytest.approx(1.6 / 3), "c")
    assert reduce_per_class(cand, base, "worst_drop", True) == (pytest.approx(0.1), "b")
    assert reduce_per_class(cand, base, "worst", True) == (0.5, "b")


def test_reduce_ties_pick_the_first_class() -> None:
    assert reduce_per_class({"x": 0.3, "y": 0.3}, None, "worst", True) == (0.3, "x")


@pytest.mark.parametrize(
    ("cand", "base", "how", "match"),
    [
        ({"a": NAN}, None, "worst", "all NaN"),
        ({}, None, "mean", "all NaN"),
        ({"a": 0.5}, {"a": NAN}, "worst_drop", "all NaN"),
        ({"a": 0.5}, None, "worst_drop", "needs the baseline"),
        ({"a": 0.5}, None, "median", "unknown reduce 'median'"),
    ],
)
def test_exception_reduce(
    cand: dict[str, float], base: dict[str, float] | None, how: str, match: str
) -> None:
    with pytest.raises(HarnessError, match=match):
        reduce_per_class(cand, base, how, True)


# -------------------------------------------------------------------- interval decisions
def _ci(low: float, high: float) -> Interval:
    return Interval(low, high, 0.95)


@pytest.mark.parametrize(
    ("limits", "value", "baseline", "quantity", "ci", "mode", "violation"),
    [
        # drop_max 0.08, point drop 0.05 within: conservative needs the whole CI within
        ({"drop_max": 0.08}, 0.45, 0.5, "drop", (0.03, 0.07), "conservative", None),
        ({"drop_max": 0.08}, 0.45, 0.5, "drop", (0.03, 0.08), "conservative", None),
        (
            {"drop_max": 0.08},
            0.45,
            0.5,
            "drop",
            (0.03, 0.09),
            "conservative",
            "drop 95% CI [0.03, 0.09] not within drop_max 0.08 (decide: conservative)",
        ),
        # point drop 0.112 violates: lenient fails only if the whole CI does
        ({"drop_max": 0.08}, 0.319, 0.431, "drop", (0.07, 0.143), "lenient", None),
        (
            {"drop_max": 0.08},
            0.319,
            0.431,
            "drop",
            (0.081, 0.143),
            "lenient",
            "drop 95% CI [0.081, 0.143] > drop_max 0.08 (decide: lenient)",
        ),
        # lower limits mirror upper ones
        ({"ratio_min": 0.95}, 0.97, 1.0, "ratio", (0.9, 1.02), "lenient", None),
        (
            {"ratio_min": 0.95},
            0.97,
            1.0,
            "ratio",
            (0.9, 1.02),
            "conservative",
            "ratio 95% CI [0.9, 1.02] not within ratio_min 0.95 (decide: conservative)",
        ),
        (
            {"min": 0.5},
            0.45,
            None,
            "value",
            (0.41, 0.49),
            "lenient",
            "value 95% CI [0.41, 0.49] < min 0.5 (decide: lenient)",
        ),
        ({"max": 0.1}, 0.05, None, "value", (0.01, 0.1), "conservative", None),
        # the interval decides, not the point: a passing point can fail and vice versa
        ({"max": 0.1}, 0.2, None, "value", (0.01, 0.3), "lenient", None),
    ],
)
def test_decide_with_intervals(
    limits: dict[str, float],
    value: float,
    baseline: float | None,
    quantity: str,
    ci: tuple[float, float],
    mode: str,
    violation: str | None,
) -> None:
    decision = decide(
        Thresholds(**limits), value, baseline, intervals={quantity: _ci(*ci)}, mode=mode
    )
    assert decision.violations == ([] if violation is None else [violation])


def test_interval_decisions_nest() -> None:
    """conservative pass ⇒ point pass ⇒ lenient pass, when the point lies in the CI."""
    th = Thresholds(drop_max=0.05)
    for low, high in [(0.0, 0.04), (0.03, 0.06), (0.055, 0.07), (0.06, 0.09)]:
        mid = (low + high) / 2
        res = {
            mode: decide(th, 0.5 - mid, 0.5, intervals={"drop": _ci(low, high)}, mode=mode).passed
            for mode in ("conservative", "lenient")
        }
        point = decide(th, 0.5 - mid, 0.5).passed
        assert res["conservative"] <= point <= res["lenient"]


def test_undefined_interval_fails_and_missing_interval_raises() -> None:
    bad = decide(Thresholds(max=1.0), 0.5, intervals={"value": _ci(NAN, NAN)}, mode="lenient")
    assert not bad.passed and "undefined (NaN)" in bad.message
    with pytest.raises(HarnessError, match="needs a confidence interval of drop"):
        decide(Thresholds(drop_max=0.1), 0.5, 0.6, intervals={}, mode="conservative")
    with pytest.raises(HarnessError, match="unknown decide mode"):
        decide(Thresholds(max=1.0), 0.5, mode="strict")


def test_gated_quantities_of_arrays_match_scalars() -> None:
    values, baselines = np.array([0.3, 0.0, 0.5]), np.array([0.4, 0.0, 0.0])
    arrays = gated_quantities(values, baselines)
    for i in range(3):
        scalars = gated_quantities(float(values[i]), float(baselines[i]))
        for key, got in scalars.items():
            assert np.array_equal(arrays[key][i], got, equal_nan=True), key
    assert Thresholds(min=0, drop_max=1, ratio_max=2).quantities() == ["value", "drop", "ratio"]

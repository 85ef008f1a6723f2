"""mPC, rPC, CE and mCE on hand-made grids (expected numbers worked out by hand)."""

from __future__ import annotations

import json
import math

import pytest

from robustness_harness.metrics import METRICS
from robustness_harness.metrics.context import CorruptionGrid
from robustness_harness.metrics.robustness import (
    ce,
    corruption_error,
    mce,
    mean_corruption_error,
    mean_pc,
    mpc,
    relative_pc,
    rpc,
)

FAMILIES = {"gaussian_noise": "noise", "shot_noise": "noise", "fog": "weather"}


def _grid(
    clean: float, baseline: CorruptionGrid | None = None, **scores: tuple[float, float]
) -> CorruptionGrid:
    """A grid over ``FAMILIES``: ``scores[corruption]`` at severities 1 and 2."""
    values = {(c, s): v for c, pair in scores.items() for s, v in enumerate(pair, start=1)}
    return CorruptionGrid(clean=clean, values=values, families=FAMILIES, baseline=baseline)


# Baseline: clean 0.9.
#   gaussian_noise: 0.6, 0.4   errors 0.4 + 0.6 = 1.0
#   shot_noise:     0.8, 0.6   errors 0.2 + 0.4 = 0.6
#   fog:            0.7, 0.5   errors 0.3 + 0.5 = 0.8
BASELINE = _grid(0.9, gaussian_noise=(0.6, 0.4), shot_noise=(0.8, 0.6), fog=(0.7, 0.5))

# Candidate: clean 0.8.
#   gaussian_noise: 0.5, 0.3   errors 1.2   CE = 1.2 / 1.0 = 1.2
#   shot_noise:     0.8, 0.5   errors 0.7   CE = 0.7 / 0.6 = 7/6
#   fog:            0.6, 0.4   errors 1.0   CE = 1.0 / 0.8 = 1.25
# mPC = (0.5 + 0.3 + 0.8 + 0.5 + 0.6 + 0.4) / 6 = 3.1 / 6;  rPC = mPC / 0.8 = 3.1 / 4.8
# mCE = (1.2 + 7/6 + 1.25) / 3 = 3.6166.../3
# noise:   mPC = 2.1 / 4 = 0.525, rPC = 0.525 / 0.8 = 0.65625, mCE = (1.2 + 7/6) / 2
# weather: mPC = 0.5, rPC = 0.625, mCE = 1.25
CANDIDATE = _grid(0.8, BASELINE, gaussian_noise=(0.5, 0.3), shot_noise=(0.8, 0.5), fog=(0.6, 0.4))


def test_plain_formulas() -> None:
    assert mean_pc({("a", 1): 0.2, ("a", 2): 0.4, ("b", 1): 0.9}) == pytest.approx(0.5)
    assert mean_pc({("a", 1): 0.2, ("a", 2): 0.4, ("b", 1): 0.9}, ["a"]) == pytest.approx(0.3)
    assert math.isnan(mean_pc({("a", 1): 0.2}, ["b"]))
    assert relative_pc(0.3, 0.6) == pytest.approx(0.5)
    assert math.isnan(relative_pc(0.3, 0.0))
    assert corruption_error({1: 0.5, 2: 0.3}, {1: 0.6, 2: 0.4, 3: 0.1}) == pytest.approx(1.2)
    assert corruption_error({1: 1.0}, {1: 1.0}) == 1.0
    assert corruption_error({1: 0.9}, {1: 1.0}) == math.inf
    with pytest.raises(ValueError, match=r"no scores at severities \[3\]"):
        corruption_error({1: 0.5, 3: 0.2}, {1: 0.6})
    assert mean_corruption_error([1.2, 0.8, 1.0]) == pytest.approx(1.0)
    assert math.isnan(mean_corruption_error([]))


def test_mpc_and_rpc() -> None:
    assert mpc(CANDIDATE).value == pytest.approx(3.1 / 6)
    assert rpc(CANDIDATE).value == pytest.approx(3.1 / 4.8)
    assert mpc(BASELINE).value == pytest.approx(3.6 / 6)
    assert rpc(BASELINE).value == pytest.approx(0.6 / 0.9)
    zero_clean = CorruptionGrid(clean=0.0, values={("fog", 1): 0.0}, families={"fog": "weather"})
    assert math.isnan(rpc(zero_clean).value)


def test_mce_and_ce() -> None:
    assert mce(CANDIDATE).value == pytest.approx((1.2 + 7 / 6 + 1.25) / 3)
    assert ce(CANDIDATE, corruption="gaussian_noise").value == pytest.approx(1.2)
    assert ce(CANDIDATE, corruption="shot_noise").value == pytest.approx(7 / 6)
    assert ce(CANDIDATE, corruption="fog").value == pytest.approx(1.25)


def test_the_baseline_has_ce_one() -> None:
    assert mce(BASELINE).value == 1.0
    assert ce(BASELINE, corruption="fog").value == 1.0
    assert mce(BASELINE).details["per_family"]["noise"]["mce"] == 1.0


def test_family_restriction() -> None:
    assert mpc(CANDIDATE, family="noise").value == pytest.approx(0.525)
    assert rpc(CANDIDATE, family="noise").value == pytest.approx(0.65625)
    assert mce(CANDIDATE, family="noise").value == pytest.approx((1.2 + 7 / 6) / 2)
    assert mpc(CANDIDATE, family="weather").value == pytest.approx(0.5)
    assert mce(CANDIDATE, family="weather").value == pytest.approx(1.25)
    assert ce(CANDIDATE, corruption="fog", family="weather").value == pytest.approx(1.25)
    with pytest.raises(ValueError, match="'fog' is not in family 'noise' of the grid"):
        ce(CANDIDATE, corruption="fog", family="noise")


def test_bad_family_or_corruption() -> None:
    with pytest.raises(ValueError, match="unknown corruption family 'rain'; valid: noise, blur"):
        mpc(CANDIDATE, family="rain")
    with pytest.raises(ValueError, match="no corruption of family 'blur'; it has noise, weather"):
        mce(CANDIDATE, family="blur")
    with pytest.raises(ValueError, match="'snow' is not in the grid; it has gaussian_noise"):
        ce(CANDIDATE, corruption="snow")
    partial = CorruptionGrid(clean=0.9, values={("fog", 1): 0.7}, families=FAMILIES, baseline=None)
    extra_severity = CorruptionGrid(
        clean=0.8, values={("fog", 1): 0.6, ("fog", 3): 0.2}, families=FAMILIES, baseline=partial
    )
    with pytest.raises(
        ValueError, match=r"of 'fog': the baseline has no scores at severities \[3\]"
    ):
        mce(extra_severity)


def test_details() -> None:
    details = mce(CANDIDATE).details
    assert details["clean"] == 0.8 and details["family"] is None
    assert details["is_baseline"] is False
    per_family = details["per_family"]
    assert list(per_family) == ["noise", "weather"]
    assert per_family["noise"]["mpc"] == pytest.approx(0.525)
    assert per_family["noise"]["rpc"] == pytest.approx(0.65625)
    assert per_family["noise"]["mce"] == pytest.approx((1.2 + 7 / 6) / 2)
    assert per_family["weather"] == pytest.approx({"mpc": 0.5, "rpc": 0.625, "mce": 1.25})
    assert details["per_corruption"] == pytest.approx(
        {"gaussian_noise": 0.4, "shot_noise": 0.65, "fog": 0.5}
    )
    assert details["per_corruption_ce"] == pytest.approx(
        {"gaussian_noise": 1.2, "shot_noise": 7 / 6, "fog": 1.25}
    )
    assert details["table"] == {
        "gaussian_noise": {"1": 0.5, "2": 0.3},
        "shot_noise": {"1": 0.8, "2": 0.5},
        "fog": {"1": 0.6, "2": 0.4},
    }
    assert details["baseline_table"]["fog"] == {"1": 0.7, "2": 0.5}
    json.dumps(details)
    weather = rpc(CANDIDATE, family="weather").details
    assert list(weather["table"]) == ["fog"] and list(weather["per_family"]) == ["weather"]
    assert ce(CANDIDATE, corruption="fog").details["per_corruption_ce"] == {"fog": 1.25}


def test_registered() -> None:
    for name, higher in (("mpc", True), ("rpc", True), ("mce", False), ("ce", False)):
        info = METRICS.get(name)
        assert info.inputs == "corruption_grid" and info.task == "any"
        assert info.higher_is_better is higher
        assert "family" in info.params
    corruption = METRICS.get("ce").params["corruption"]
    assert corruption.default is corruption.empty
    assert METRICS.get("mce")(CANDIDATE).value == pytest.approx((1.2 + 7 / 6 + 1.25) / 3)

"""The pytest plugin end to end (pytester): ids, pass/fail, messages, -k, cache reuse."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import pytest

from tests.plugin.suite_texts import BAD_SUITE, GOOD_SUITE


def test_item_ids(suite_dir: pytest.Pytester) -> None:
    (suite_dir.path / "suites" / "tiny.yaml").write_text(GOOD_SUITE)
    result = suite_dir.runpytest("--collect-only", "-q", "suites")
    result.stdout.fnmatch_lines(
        [
            "suites/tiny.yaml::magnitude-30::clean_map_drop",
            "suites/tiny.yaml::magnitude-30::worst_class_ap",
        ]
    )
    assert "dense::" not in result.stdout.str()  # the baseline is not gated on relative checks


@pytest.mark.slow
def test_passing_suite_then_cache_reuse(suite_dir: pytest.Pytester) -> None:
    (suite_dir.path / "suites" / "tiny.yaml").write_text(GOOD_SUITE)
    first = suite_dir.runpytest("suites", "--junitxml=junit.xml")
    first.assert_outcomes(passed=2)
    junit = ElementTree.parse(suite_dir.path / "junit.xml")
    props = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert props["harness_metric"] in ("map", "per_class_ap")
    assert 0.0 <= float(props["harness_value"]) <= 1.0 and props["harness_passed"] == "True"
    assert "built checkpoint tiny/magnitude-30" in first.stdout.str()
    assert "robustness-harness release gates" in first.stdout.str()
    first.stdout.fnmatch_lines(["harness peak memory (RSS): main * MiB*"])
    second = suite_dir.runpytest("suites")
    second.assert_outcomes(passed=2)
    assert "built checkpoint" not in second.stdout.str()
    assert "predicted" not in second.stdout.str()


@pytest.mark.slow
def test_failing_suite_message(suite_dir: pytest.Pytester) -> None:
    (suite_dir.path / "suites" / "bad.yaml").write_text(BAD_SUITE)
    result = suite_dir.runpytest("suites")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert re.search(r"mAP 0\.\d{3} \(baseline 0\.\d{3}\) drop 0\.\d+ > drop_max 0\.02", out), out
    assert "baseline 'dense' | 24 images | seed 0" in out
    assert "Traceback" not in out


def test_k_selection(suite_dir: pytest.Pytester) -> None:
    (suite_dir.path / "suites" / "tiny.yaml").write_text(GOOD_SUITE)
    result = suite_dir.runpytest("suites", "-k", "magnitude-30 and worst", "--collect-only", "-q")
    out = result.stdout.str()
    assert "suites/tiny.yaml::magnitude-30::worst_class_ap" in out
    assert "clean_map_drop" not in out


def test_spec_error_is_one_clean_line(suite_dir: pytest.Pytester) -> None:
    broken = GOOD_SUITE.replace("metric: map", "metric: mAp")
    (suite_dir.path / "suites" / "broken.yaml").write_text(broken)
    result = suite_dir.runpytest("suites")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "unknown metric 'mAp'" in out and "did you mean 'map'" in out
    assert "Traceback" not in out

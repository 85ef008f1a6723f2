"""Statistical gates end to end: bootstrap intervals, repeated runs, t-test and ANOVA."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from tests.plugin.suite_texts import magnitude, suite_text

pytestmark = pytest.mark.slow  # every test here builds or trains a variant

SUITE = suite_text(
    "tiny",
    magnitude(30, "finetune: {epochs: 1, max_steps: 1, batch_size: 2}", "runs: 2"),
    """\
  clean_map: {metric: map, drop_max: 0.5, confidence: 0.9, resamples: 200, decide: conservative}
  worst_class:
    metric: per_class_ap
    reduce: worst_drop
    max: 1.0
    confidence: 0.95
    resamples: 200
    decide: lenient
  map_runs: {metric: map, drop_max: 0.5, runs_test: paired_t, confidence: 0.95,
             decide: lenient, anova: true}
  impossible: {metric: map, min: 0.99, confidence: 0.95, resamples: 200, decide: lenient}
""",
    seed=0,
)


def _properties(path: object) -> dict[str, dict[str, str]]:
    junit = ElementTree.parse(path)  # type: ignore[arg-type]
    return {
        f"{p['harness_variant']}::{p['harness_check']}": p
        for p in (
            {q.get("name", ""): q.get("value", "") for q in case.iter("property")}
            for case in junit.iter("testcase")
        )
        if "harness_check" in p
    }


def test_statistical_gates(suite_dir: pytest.Pytester) -> None:
    (suite_dir.path / "suites" / "tiny.yaml").write_text(SUITE)
    first = suite_dir.runpytest("suites", "--junitxml=first.xml", "-p", "no:cacheprovider")
    out = first.stdout.str()
    first.assert_outcomes(passed=3, failed=2)  # 'impossible' fails for both variants
    assert "built checkpoint tiny/magnitude-30#run1" in out  # run 2 has its own checkpoint
    assert "95% CI of mAP [" in out and "< min 0.99 (decide: lenient)" in out
    props = _properties(suite_dir.path / "first.xml")

    clean = props["magnitude-30::clean_map"]
    assert clean["harness_runs"] == "2" and clean["harness_seeds"] == "0,1"
    assert clean["harness_interval"] == "bootstrap" and clean["harness_resamples"] == "200"
    low, high = float(clean["harness_ci_drop_low"]), float(clean["harness_ci_drop_high"])
    drop = float(clean["harness_baseline_value"]) - float(clean["harness_value"])
    assert low <= high and high <= 0.5  # conservative: the whole interval is within
    assert low - 0.1 <= drop <= high + 0.1
    runs = [float(v) for v in clean["harness_run_values"].split(",")]
    assert float(clean["harness_value"]) == pytest.approx(sum(runs) / 2)

    worst = props["magnitude-30::worst_class"]
    assert float(worst["harness_ci_value_low"]) <= float(worst["harness_ci_value_high"])

    t_gate = props["magnitude-30::map_runs"]
    assert t_gate["harness_interval"] == "paired_t"
    assert float(t_gate["harness_ci_drop_low"]) <= float(t_gate["harness_ci_drop_high"])
    assert 0 <= float(t_gate["harness_t_drop_max_p"]) <= 1
    assert "harness_anova_f" in t_gate and "harness_anova_p" in t_gate

    second = suite_dir.runpytest("suites", "--junitxml=second.xml", "-p", "no:cacheprovider")
    second.assert_outcomes(passed=3, failed=2)
    assert "built checkpoint" not in second.stdout.str()
    again = _properties(suite_dir.path / "second.xml")
    for item in ("magnitude-30::clean_map", "magnitude-30::worst_class", "dense::impossible"):
        for key, value in props[item].items():
            if key.startswith("harness_ci_"):
                assert again[item][key] == value, (item, key)  # seeded: same intervals

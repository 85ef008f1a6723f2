"""A latency gate with ``ratio_max`` through the plugin: candidate and baseline come from
one paired measurement, and the spread of the per-round ratios is recorded (JUnit
properties, results.json, the failure message). An absolute ``max`` stays unpaired."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.plugin.suite_texts import junit_properties, toysigns_suite

pytestmark = pytest.mark.slow  # every test here builds or trains a variant

SUITE = toysigns_suite(
    "lat",
    """\
  latency: {metric: latency_ms, iters: 7, warmup: 1, threads: 1, ratio_max: RATIO}
  latency_abs: {metric: latency_ms, iters: 4, warmup: 1, max: 100000}
apply: {latency: [magnitude-50], latency_abs: [magnitude-50]}
""",
)


def test_ratio_gate_is_paired_and_records_the_spread(suite_dir: pytest.Pytester) -> None:
    (suite_dir.path / "suites" / "lat.yaml").write_text(SUITE.replace("RATIO", "100"))
    args = ["suites", "--junitxml=out.xml", "--harness-report", "out", "-p", "no:cacheprovider"]
    result = suite_dir.runpytest(*args)
    result.assert_outcomes(passed=2)
    assert "measured latency_ms of lat/magnitude-50 with dense" in result.stdout.str()

    props = junit_properties(suite_dir.path / "out.xml")
    paired = props["latency"]
    assert paired["harness_paired"] == "True" and paired["harness_rounds"] == "3"
    low, high = float(paired["harness_round_ratio_min"]), float(paired["harness_round_ratio_max"])
    assert 0 < low <= float(paired["harness_round_ratio_median"]) <= high
    assert float(paired["harness_round_ratio_iqr"]) >= 0
    assert "harness_paired" not in props["latency_abs"]

    doc = json.loads((suite_dir.path / "out" / "results.json").read_text())
    item = next(r for r in doc["items"] if r["check"] == "latency")
    cand, base = item["details"], item["baseline_details"]
    assert len(cand["samples_ms"]) == len(base["samples_ms"]) == 7 and base["paired"]
    # the gate's baseline value is the baseline's p50 from the same paired measurement
    assert item["baseline_value"] == pytest.approx(np.percentile(base["samples_ms"], 50))
    assert item["value"] == pytest.approx(np.percentile(cand["samples_ms"], 50))
    assert len(cand["round_ratios"]) == 3


def test_failing_ratio_gate_shows_the_spread(suite_dir: pytest.Pytester) -> None:
    (suite_dir.path / "suites" / "lat.yaml").write_text(SUITE.replace("RATIO", "0.001"))
    result = suite_dir.runpytest("suites", "-k", "latency and not abs", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "> ratio_max 0.001" in out, out
    assert "timed with the baseline in 3 alternating rounds: per-round ratio median" in out

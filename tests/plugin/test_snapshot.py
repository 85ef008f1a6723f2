"""Baseline snapshots through the plugin: missing → fail, --harness-regen records,
round trip passes, a moved value or another environment fails with the reason.
(Regeneration under two xdist workers is tested with the report in test_report.py.)"""

from __future__ import annotations

import json

import pytest

from tests.plugin.suite_texts import magnitude, suite_text

pytestmark = pytest.mark.slow  # every test here builds or trains a variant

SUITE = suite_text(
    "snap",
    magnitude(30) + magnitude(50),
    """\
  map_snapshot: {metric: map, baseline: snapshot, tolerance: 0.001}
  map_drop: {metric: map, drop_max: 1.0}
""",
)


def test_snapshot_missing_regen_round_trip_and_mismatch(suite_dir: pytest.Pytester) -> None:
    (suite_dir.path / "suites" / "snap.yaml").write_text(SUITE)
    snapshot = suite_dir.path / "suites" / "baselines" / "snap.json"

    missing = suite_dir.runpytest("suites")
    missing.assert_outcomes(passed=2, failed=2)
    missing.stdout.fnmatch_lines(
        [
            "*snapshot missing: no value of magnitude-30::map_snapshot in "
            "suites/baselines/snap.json (run with --harness-regen to record it)*"
        ]
    )
    assert not snapshot.exists()  # never created silently

    regen = suite_dir.runpytest("suites", "--harness-regen")
    regen.assert_outcomes(passed=4)
    assert "recorded" in regen.stdout.str()  # the summary's snapshot column
    doc = json.loads(snapshot.read_text())
    assert sorted(doc["values"]) == ["magnitude-30", "magnitude-50"]
    entry = doc["values"]["magnitude-30"]["map_snapshot"]
    assert set(doc["values"]["magnitude-30"]) == {"map_snapshot", "map_drop"}
    assert 0 < entry["value"] < 1 and entry["metric"] == "map"
    for stamp in ("torch", "torchvision", "harness", "data", "checkpoint", "device", "git_commit"):
        assert entry["stamps"][stamp]

    suite_dir.runpytest("suites").assert_outcomes(passed=4)

    entry["value"] += 0.01
    snapshot.write_text(json.dumps(doc))
    moved = suite_dir.runpytest("suites", "-k", "magnitude-30")
    moved.assert_outcomes(passed=1, failed=1)
    moved.stdout.fnmatch_lines(["mAP 0.* snapshot 0.*: changed by -0.01 > tolerance 0.001 (*"])

    entry["value"] -= 0.01
    entry["stamps"]["torch"] = "1.0.0"
    snapshot.write_text(json.dumps(doc))
    other_env = suite_dir.runpytest("suites", "-k", "magnitude-30")
    other_env.assert_outcomes(passed=1, failed=1)
    other_env.stdout.fnmatch_lines(
        [
            "*snapshot not comparable: magnitude-30::map_snapshot in suites/baselines/snap.json "
            "was recorded with torch 1.0.0 -> * (rerun with --harness-regen to re-record here*"
        ]
    )
    assert "Traceback" not in other_env.stdout.str()

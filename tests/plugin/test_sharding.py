"""``--harness-shard K/N`` on real runs of a tiny suite: each variant's checks stay in one
job, and ``harness report merge`` of the jobs equals the unsharded run but for timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from robustness_harness.cli import main
from tests.plugin.suite_texts import magnitude, tiny_classifier_suite, write_tiny_classifier

CHECKS = (
    "  accuracy: {metric: accuracy, drop_max: 1}\n"
    "  ece: {metric: ece, max: 1}\n"
    "  flips: {metric: flip_rate, max: 1}\n"
)
TIMINGS = {"duration_s", "started", "finished", "date"}


def _suite() -> str:
    text = tiny_classifier_suite(CHECKS)
    variants = magnitude(30) + magnitude(60) + magnitude(90)
    return text.replace("  dense: {}\n", "  dense: {}\n" + variants)


def _items(path: Path) -> list[dict[str, Any]]:
    doc = json.loads((path / "results.json").read_text())
    return [_untimed(item) for item in doc["items"]]


def _untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


@pytest.mark.slow
def test_two_shards_merge_to_the_unsharded_run(
    suite_dir: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tiny_classifier(suite_dir)
    (suite_dir.path / "suites" / "tiny.yaml").write_text(_suite())
    run = ("suites", "-p", "no:cacheprovider", "--harness-report")
    assert suite_dir.runpytest_subprocess(*run, "whole").ret == 0
    variants: list[set[str]] = []
    for k in (1, 2):
        result = suite_dir.runpytest_subprocess(
            *run, f"job{k}", "--harness-shard", f"{k}/2", "--harness-durations", "whole"
        )
        assert result.ret == 0
        result.stdout.fnmatch_lines([f"harness shard {k}/2: * of 4 units (*)"])
        doc = json.loads((suite_dir.path / f"job{k}" / "results.json").read_text())
        assert doc["shard"]["index"] == k and doc["shard"]["all_units"] == 4
        variants.append({item["variant"] for item in doc["items"]})
        # every check of a variant ran in the job that has the variant (the baseline
        # gates only its absolute ``ece``)
        assert len(doc["items"]) == sum(1 if v == "dense" else 3 for v in variants[-1])
    assert variants[0].isdisjoint(variants[1]) and variants[0] | variants[1] == {
        "dense",
        "magnitude-30",
        "magnitude-60",
        "magnitude-90",
    }
    capsys.readouterr()
    jobs = [str(suite_dir.path / f"job{k}") for k in (1, 2)]
    assert main(["report", "merge", *jobs, "-o", str(suite_dir.path / "merged")]) == 0
    assert "merged 2 jobs: 10 gates" in capsys.readouterr().out
    assert _items(suite_dir.path / "merged") == _items(suite_dir.path / "whole")
    merged = json.loads((suite_dir.path / "merged" / "results.json").read_text())
    whole = json.loads((suite_dir.path / "whole" / "results.json").read_text())
    assert "shard" not in merged
    assert (merged["summary"], merged["counts"]) == (whole["summary"], whole["counts"])
    assert (suite_dir.path / "merged" / "report.html").stat().st_size > 0
    # one job alone is not the whole run
    assert main(["report", "merge", jobs[0], "-o", str(suite_dir.path / "half")]) == 2
    assert "job(s) 2/2 missing" in capsys.readouterr().err

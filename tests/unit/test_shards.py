"""The shard plan (``--harness-shard K/N``) and the merge of sharded reports, without
running a suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robustness_harness.errors import HarnessError
from robustness_harness.report.merge import merge_reports, merged_records
from robustness_harness.report.results import collection_record, gate_record, write_report
from robustness_harness_pytest.shards import (
    Shard,
    plan,
    plan_digest,
    recorded_durations,
    shard_record,
    unit_of,
)


def test_parse_shard() -> None:
    assert Shard.parse("2/3") == Shard(2, 3)
    for bad in ("3", "0/2", "3/2", "a/b", "1/0", "-1/2"):
        with pytest.raises(pytest.UsageError, match="--harness-shard"):
            Shard.parse(bad)


def test_a_suite_gate_belongs_to_its_variant() -> None:
    assert unit_of("suites/a.yaml::int8::pgd", is_suite=True) == "suites/a.yaml::int8"
    assert unit_of("tests/test_x.py::test_y", is_suite=False) == "tests/test_x.py::test_y"


@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.floats(0, 1e4), min_size=1),
    st.integers(1, 5),
)
def test_plan_gives_every_unit_to_one_shard_and_balances(
    durations: dict[str, float], count: int
) -> None:
    assignment = plan(durations, durations, count)
    assert set(assignment) == set(durations)
    assert set(assignment.values()) <= set(range(1, count + 1))
    assert plan(reversed(list(durations)), durations, count) == assignment  # order-free
    load = [sum(durations[u] for u, k in assignment.items() if k == i) for i in range(1, count + 1)]
    # greedy longest-first: no shard exceeds the ideal share by more than one unit
    assert max(load) <= sum(durations.values()) / count + max(durations.values()) + 1e-6


def test_plan_uses_recorded_durations(tmp_path: Path) -> None:
    items = [
        {"nodeid": "s.yaml::big::a", "variant": "big", "duration_s": 50.0},
        {"nodeid": "s.yaml::big::b", "variant": "big", "duration_s": 40.0},
        {"nodeid": "s.yaml::small::a", "variant": "small", "duration_s": 5.0},
        {"nodeid": "s.yaml", "variant": None},
    ]
    (tmp_path / "results.json").write_text(json.dumps({"items": items}))
    durations = recorded_durations(tmp_path)
    assert durations == {"s.yaml::big": 90.0, "s.yaml::small": 5.0}
    units = ["s.yaml::big", "s.yaml::small", "s.yaml::new1", "s.yaml::new2"]
    assignment = plan(units, durations, 2)
    # longest first: big (90) alone, then the unknown ones weigh the median (47.5)
    assert assignment == {
        "s.yaml::big": 1,
        "s.yaml::new1": 2,
        "s.yaml::new2": 2,
        "s.yaml::small": 1,
    }
    with pytest.raises(pytest.UsageError, match="--harness-durations"):
        recorded_durations(tmp_path / "missing.json")


def _gate(variant: str, check: str) -> dict:
    record = gate_record(
        "s", variant, check, "ece", status="skipped", message="no GPU", phase="setup"
    )
    return {**record, "nodeid": f"suites/s.yaml::{variant}::{check}", "duration_s": 1.0}


def _jobs(tmp_path: Path, count: int = 2) -> tuple[list[Path], dict[str, int]]:
    units = [f"suites/s.yaml::v{i}" for i in range(5)]
    assignment = plan(units, {}, count)
    broken = collection_record("suites/bad.yaml", "bad.yaml:3: unknown key 'x'")
    paths = []
    for k in range(1, count + 1):
        records = [
            _gate(u.split("::")[1], c) for u in units if assignment[u] == k for c in ("a", "b")
        ]
        out = tmp_path / f"job{k}"
        write_report(out, [*records, broken], shard=shard_record(Shard(k, count), assignment))
        paths.append(out)
    return paths, assignment


def test_merge_joins_all_jobs_and_keeps_a_collection_error_once(tmp_path: Path) -> None:
    paths, _ = _jobs(tmp_path)
    records, _, _ = merged_records(paths)
    assert len(records) == 5 * 2 + 1
    results, _, gates = merge_reports(paths, tmp_path / "merged")
    doc = json.loads(results.read_text())
    assert gates == 11 and doc["summary"]["total"] == 11 and "shard" not in doc


def test_merge_refuses_a_missing_a_repeated_or_a_foreign_job(tmp_path: Path) -> None:
    paths, assignment = _jobs(tmp_path)
    with pytest.raises(HarnessError, match=r"job\(s\) 2/2 missing"):
        merged_records(paths[:1])
    with pytest.raises(HarnessError, match="given twice"):
        merged_records([paths[0], paths[0], paths[1]])
    other, _ = _jobs(tmp_path / "other", count=3)
    with pytest.raises(HarnessError, match="another sharded run"):
        merged_records([paths[0], other[1]])
    plain = tmp_path / "plain"
    write_report(plain, [_gate("v0", "a")])
    with pytest.raises(HarnessError, match="not the results of a sharded job"):
        merged_records([plain])
    # a gate in two jobs (a plan edited by hand) is an error, not a silent pick
    doc = json.loads((paths[1] / "results.json").read_text())
    doc["items"].append(_gate("v0", "a") | {"duration_s": 2.0})
    (paths[1] / "results.json").write_text(json.dumps(doc))
    assert assignment["suites/s.yaml::v0"] == 1  # equal weights: units in turn
    with pytest.raises(HarnessError, match="is in two jobs"):
        merged_records(paths)
    assert (
        plan_digest(assignment)
        == json.loads((paths[0] / "results.json").read_text())["shard"]["plan"]
    )

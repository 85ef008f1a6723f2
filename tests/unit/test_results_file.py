"""results.json read back (``load_results``), two runs compared gate by gate
(``compare_results``) and ``harness compare``: real files written by ``write_report``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import robustness_harness
from robustness_harness.cli import main
from robustness_harness.errors import HarnessError
from robustness_harness.report import results as report
from robustness_harness.report.compare import (
    SCHEMA_PATH,
    Results,
    compare_results,
    load_results,
    same_value,
)
from robustness_harness.report.results import (
    collection_record,
    gate_record,
    outcome_record,
    write_report,
)
from robustness_harness.suite import CheckSpec
from tests.unit.builders import ITEM_STAMPS, decided_outcome

MAP_DROP = CheckSpec.model_validate({"metric": "map", "drop_max": 0.1})
"""Every measured gate here: mAP against a baseline of 0.5, so it passes from 0.4 up."""
UNLOADABLE = collection_record("suites/bad.yaml", "bad.yaml:3: unknown metric 'mAp'")


def measured(variant: str, check: str, value: float) -> dict[str, Any]:
    """The record of gate ``s/variant/check`` that measured mAP ``value``."""
    outcome = decided_outcome(MAP_DROP, value, 0.5, variant=variant, name=check)
    record = outcome_record(
        outcome, params=MAP_DROP.params, item_stamps=ITEM_STAMPS, primary_metric="map"
    )
    return {**record, "status": "passed" if outcome.passed else "failed", "duration_s": 0.1}


def errored(variant: str, check: str) -> dict[str, Any]:
    """The record of gate ``s/variant/check`` that raised while measuring."""
    return gate_record(
        "s", variant, check, "map", status="error", message="OSError: disk full", phase="call"
    )


def skipped(variant: str, check: str) -> dict[str, Any]:
    """The record of gate ``s/variant/check`` skipped here."""
    return gate_record(
        "s", variant, check, "map", status="skipped", message="no CUDA GPU", phase="call"
    )


RUN_A = [
    measured("p30", "map", 0.47),
    measured("p50", "map", 0.45),
    measured("p70", "map", 0.30),
    measured("p30", "map_fine", 0.46),
    measured("p50", "map_fine", 0.45),
    measured("p70", "map_fine", 0.45),
    measured("p30", "old", 0.5),
    UNLOADABLE,
]
RUN_B = [
    measured("p30", "map", 0.47),
    measured("p50", "map", 0.30),
    measured("p70", "map", 0.42),
    measured("p30", "map_fine", 0.461),
    errored("p50", "map_fine"),
    skipped("p70", "map_fine"),
    measured("p30", "new", 0.5),
    UNLOADABLE,
]
KINDS = {
    "s/p30/map": "same",
    "s/p50/map": "regressed",
    "s/p70/map": "fixed",
    "s/p30/map_fine": "changed",
    "s/p50/map_fine": "regressed",
    "s/p70/map_fine": "changed",
    "s/p30/old": "removed",
    "s/p30/new": "added",
    "suites/bad.yaml": "same",
}
SUMMARY = "2 regressed, 1 fixed, 2 changed, 2 same, 1 added, 1 removed"


def written(directory: Path, records: Sequence[dict[str, Any]]) -> Path:
    """The results.json that ``write_report`` writes for ``records`` into ``directory``."""
    results, _ = write_report(directory, records, started="2026-01-01T00:00:00+00:00")
    return results


@pytest.fixture
def run_a(tmp_path: Path) -> Path:
    return written(tmp_path / "a", RUN_A)


@pytest.fixture
def run_b(tmp_path: Path) -> Path:
    return written(tmp_path / "b", RUN_B)


# -- load_results -------------------------------------------------------------------------
def test_round_trip(run_a: Path) -> None:
    doc = json.loads(run_a.read_text())
    results = load_results(run_a)
    assert isinstance(results, Results) and results.path == run_a
    assert (results.format, results.started) == (report.FORMAT, "2026-01-01T00:00:00+00:00")
    assert results.finished == doc["finished"] and results.stamps == doc["stamps"]
    assert results.summary == doc["summary"] and results.counts == doc["counts"]
    assert [g.record for g in results.gates] == doc["items"]
    gate = results.gate("s", "p70", "map")
    assert (gate.metric, gate.status, gate.passed) == ("map", "failed", False)
    assert (gate.value, gate.baseline_value) == (0.30, 0.5)
    assert gate.name == "s/p70/map" and gate.message == gate.record["message"] != ""
    unloadable = results.gate("suites/bad.yaml", None, None)
    assert unloadable.status == "error" and "unknown metric 'mAp'" in unloadable.message
    with pytest.raises(KeyError, match="no gate s/p99/map"):
        results.gate("s", "p99", "map")


def test_a_report_directory_reads_its_results_json(run_a: Path) -> None:
    assert load_results(run_a.parent) == load_results(run_a)


def test_reader_and_writer_agree_on_schema_and_format() -> None:
    assert SCHEMA_PATH == report.SCHEMA_PATH
    assert json.loads(SCHEMA_PATH.read_text())["properties"]["format"]["const"] == report.FORMAT


def test_exported_from_the_package() -> None:
    assert robustness_harness.load_results is load_results
    assert robustness_harness.compare_results is compare_results


def _edited(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], str]:
    """A bad-file maker: ``edit`` changes the parsed document (or returns a new one)."""

    def make(path: Path) -> str:
        doc = json.loads(path.read_text())
        changed = edit(doc)
        return json.dumps(doc if changed is None else changed)

    return make


def _drop_stamps(doc: dict[str, Any]) -> None:
    del doc["items"][0]["stamps"]


BAD_FILES = {
    "truncated": (lambda path: path.read_text()[:200], "line "),
    "wrong format": (_edited(lambda doc: doc.update(format=2)), "format"),
    "bad status": (_edited(lambda doc: doc["items"][3].update(status="maybe")), "items[3].status"),
    "missing field": (_edited(_drop_stamps), "items[0].stamps"),
    "top level array": (_edited(lambda doc: [doc]), "(top level)"),
    "long bad value": (_edited(lambda doc: doc.update(stamps=["x" * 2000])), "stamps"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_is_one_line_naming_file_and_field(run_a: Path, case: str) -> None:
    make, field = BAD_FILES[case]
    bad = run_a.with_name("bad.json")
    bad.write_text(make(run_a))
    with pytest.raises(HarnessError) as err:
        load_results(bad)
    text = str(err.value)
    assert "\n" not in text and len(text) < 400, text
    assert err.value.file == str(bad) and err.value.field.startswith(field), text
    assert err.value.hint, text


def test_messages_say_what_is_wrong(run_a: Path) -> None:
    bad = run_a.with_name("bad.json")
    bad.write_text(_edited(lambda doc: doc.update(format=2))(run_a))
    with pytest.raises(HarnessError, match=r"format 2 \(written by harness .*\) is not the"):
        load_results(bad)
    bad.write_text(_edited(_drop_stamps)(run_a))
    with pytest.raises(HarnessError, match=r"items\[0\]\.stamps: required field is missing"):
        load_results(bad)
    bad.write_text('{\n  "format": 1,\n')
    with pytest.raises(HarnessError, match="line 3 column 1: invalid JSON"):
        load_results(bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"nope\.json: no such results file"):
        load_results(tmp_path / "nope.json")


# -- compare_results ----------------------------------------------------------------------
def test_compare_classifies_every_gate(run_a: Path, run_b: Path) -> None:
    comparison = compare_results(load_results(run_a), load_results(run_b))
    assert {c.name: c.kind for c in comparison.changes} == KINDS
    assert [c.name for c in comparison.changes][:2] == ["s/p30/map", "s/p30/map_fine"]
    assert comparison.summary() == SUMMARY and comparison.regressed
    by_name = {c.name: c for c in comparison.changes}
    regressed = by_name["s/p50/map"]
    assert (regressed.status_a, regressed.status_b) == ("passed", "failed")
    assert regressed.delta == pytest.approx(-0.15)
    assert by_name["s/p50/map_fine"].delta is None  # the error has no value
    added = by_name["s/p30/new"]
    assert (added.status_a, added.value_a, added.status_b, added.value_b) == (
        None,
        None,
        "passed",
        0.5,
    )


def test_a_run_against_itself_is_all_same(run_a: Path) -> None:
    results = load_results(run_a)
    comparison = compare_results(results, results)
    assert {c.kind for c in comparison.changes} == {"same"} and not comparison.regressed


def test_a_removed_gate_counts_as_a_regression(tmp_path: Path) -> None:
    a = load_results(written(tmp_path / "a", RUN_A[:2]))
    b = load_results(written(tmp_path / "b", RUN_A[:1]))
    comparison = compare_results(a, b)
    assert comparison.counts()["removed"] == 1 and comparison.regressed


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (0.5, 0.5 * (1 + 1e-13), True),
        (0.5, 0.5 * (1 + 1e-11), False),
        (0.0, 0.0, True),
        (None, None, True),
        (None, 0.5, False),
    ],
)
def test_values_equal_within_relative_tolerance(
    a: float | None, b: float | None, same: bool
) -> None:
    assert same_value(a, b) is same


def test_a_gate_listed_twice_cannot_be_matched(tmp_path: Path) -> None:
    twice = load_results(written(tmp_path, [RUN_A[0], RUN_A[0]]))
    with pytest.raises(HarnessError, match=r"items\[1\]: gate s/p30/map is listed twice"):
        compare_results(twice, twice)


# -- harness compare ----------------------------------------------------------------------
def test_cli_table_and_summary(
    run_a: Path, run_b: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", str(run_a), str(run_b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{run_a} → {run_b}" and lines[-1] == SUMMARY
    header, *rows = lines[1:-1]
    assert header.split() == ["gate", "metric", "status", "value", "delta", "change"]
    assert len(rows) == len(KINDS)
    for row in rows:  # aligned: every row's metric under the header's
        assert row[header.index("metric") - 1] == " " and row[header.index("metric")] != " "
    regressed = next(row for row in rows if row.startswith("s/p50/map "))
    assert regressed.split()[1:] == [
        "map",
        "passed",
        "→",
        "failed",
        "0.4500",
        "→",
        "0.3000",
        "-0.15",
        "regressed",
    ]


def test_cli_only_changes(run_a: Path, run_b: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(run_a), str(run_b), "--only-changes"]) == 0
    *table, summary = capsys.readouterr().out.splitlines()
    names = {line.split()[0] for line in table[2:]}
    assert names == {name for name, kind in KINDS.items() if kind != "same"}
    assert summary == SUMMARY


@pytest.mark.parametrize(("later", "code"), [("b", 1), ("a", 0)])
def test_cli_fail_on_regression(
    run_a: Path, run_b: Path, later: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    other = {"a": run_a, "b": run_b}[later]
    assert main(["compare", str(run_a), str(other), "--fail-on-regression"]) == code


def test_cli_bad_file_exits_2(run_a: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = run_a.with_name("bad.json")
    bad.write_text("not json")
    assert main(["compare", str(run_a), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {bad}: line 1 column 1: invalid JSON")
    assert captured.err.count("\n") == 1

"""Every collected gate is in results.json, report.html and the terminal gate table —
passed, failed, errored (a HarnessError, any other exception, a variant that fails to
build, setup/teardown) or skipped — and a suite file that fails to load is there too;
the counts equal pytest's own, with and without ``-n 2``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from robustness_harness.report.results import SCHEMA_PATH, write_report
from tests.plugin.suite_texts import ERRORS_CONFTEST, ERRORS_SUITE

UNLOADABLE = ERRORS_SUITE.replace("metric: boom", "metric: booom")

EXPECTED = {
    ("magnitude-30", "clean_map_drop"): ("passed", ""),
    ("magnitude-30", "strict_map"): ("failed", "ratio"),
    ("magnitude-30", "boom"): ("error", "labels.txt: labels file is empty (fix: regenerate it)"),
    ("magnitude-30", "skip_me"): ("skipped", "skipped by the test conftest"),
    ("magnitude-30", "teardown_error"): (
        "error",
        "OSError: teardown could not release the device",
    ),
    ("broken", "clean_map_drop"): ("error", "RuntimeError: layer conv3 has no weights"),
    (None, None): ("error", "unknown metric 'booom'"),
}


def _pytest_counts(outcomes: dict[str, int]) -> dict[str, int]:
    """``parseoutcomes()`` in results.json's words (``error``, not ``errors``), without
    the warnings count, which is no gate outcome."""
    words = {"errors": "error", "error": "error"}
    return {
        words.get(k, k): v for k, v in outcomes.items() if k not in ("warnings", "warning") and v
    }


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One checkpoint cache for both runs: the second reuses the first's builds."""
    return tmp_path_factory.mktemp("errors-cache")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_every_gate_and_unloadable_suite_in_the_report(
    suite_dir: pytest.Pytester, shared_cache: Path, workers: tuple[str, ...]
) -> None:
    suite_dir.makeconftest(ERRORS_CONFTEST)
    (suite_dir.path / "suites" / "errs.yaml").write_text(ERRORS_SUITE)
    (suite_dir.path / "suites" / "unloadable.yaml").write_text(UNLOADABLE)
    args = ["suites", *workers, "--continue-on-collection-errors", "--harness-report", "out"]
    result = suite_dir.runpytest_subprocess(
        *args, "--harness-cache", str(shared_cache), "-p", "no:cacheprovider"
    )
    pytest_counts = _pytest_counts(result.parseoutcomes())
    assert pytest_counts == {"passed": 2, "failed": 3, "skipped": 1, "error": 2}, pytest_counts
    out = result.stdout.str()

    doc = json.loads((suite_dir.path / "out" / "results.json").read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    assert {k: v for k, v in doc["counts"].items() if v} == pytest_counts
    assert doc["summary"] == {
        "total": 7,
        "passed": 1,
        "failed": 1,
        "error": 4,
        "skipped": 1,
    }
    got = {(r["variant"], r["check"]): r for r in doc["items"]}
    assert set(got) == set(EXPECTED)
    for key, (status, message) in EXPECTED.items():
        record = got[key]
        assert record["status"] == status, (key, record)
        assert message in record.get("message", ""), (key, record)
        if status in ("error", "skipped"):
            assert "\n" not in record["message"] and "Traceback" not in record["message"]
    assert got[None, None]["nodeid"] == "suites/unloadable.yaml"
    assert got[None, None]["phase"] == "collect"
    assert got["magnitude-30", "skip_me"]["skip_reason"] == "skipped by the test conftest"
    # the teardown error keeps the gate's measurement next to its status
    assert got["magnitude-30", "teardown_error"]["value"] is not None
    assert not any("@" in r["nodeid"] for r in doc["items"])

    page = (suite_dir.path / "out" / "report.html").read_text()
    assert page.count(">ERROR<") == 4 and "RuntimeError: layer conv3 has no weights" in page
    assert "harness report: out/report.html (7 gates)" in out

    table = out.split("robustness-harness release gates", 1)[1]
    # a step failing inside the method: the dry run names variant, step, method, architecture
    assert re.search(
        r"broken\s+clean_map_drop\s.*ERROR\s+\S*errs\.yaml: variants\.broken\.compress\[0\]: "
        r"explode cannot compress FCOS: RuntimeError: layer conv3",
        table,
    )
    assert re.search(r"magnitude-30\s+boom\s.*ERROR\s+labels\.txt: labels file", table)
    assert re.search(
        r"suites/unloadable\.yaml\n.*\n  -\s+-\s+ERROR\s+\S*unloadable\.yaml:\d+: ", table
    )
    line = re.search(r"7 gates: .* \(pytest: (.*)\)", table)
    assert line, table
    table_counts = {w: int(n) for n, w in re.findall(r"(\d+) (\w+)", line[1])}
    assert _pytest_counts(table_counts) == pytest_counts


def test_gate_of_a_crashed_worker_is_an_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """xdist's report of a gate whose worker died carries no gate properties: the gate
    is still listed, from its node id, as an error with the crash's first line."""
    config = pytester.parseconfigure("--harness-report", str(tmp_path))
    gates = config.pluginmanager.get_plugin("harness-gate-summary")
    crash = "worker 'gw0' crashed while running 'suites/a.yaml::int8::map'\nreplacing it"
    for nodeid in ("suites/a.yaml::int8::map@a::int8", "tests/test_x.py::test_a"):
        location = (nodeid.split("::")[0], None, nodeid)
        gates.pytest_runtest_logreport(
            pytest.TestReport(nodeid, location, {}, "failed", crash, "???")
        )
    (record,) = gates.records()
    assert record["nodeid"] == "suites/a.yaml::int8::map"
    assert (record["variant"], record["check"], record["status"]) == ("int8", "map", "error")
    assert record["message"] == "worker 'gw0' crashed while running 'suites/a.yaml::int8::map'"
    assert record["outcomes"] == ["failed"]  # as pytest counts it
    results, _ = write_report(tmp_path, gates.records())
    jsonschema.validate(json.loads(results.read_text()), json.loads(SCHEMA_PATH.read_text()))
    assert [row["status"] for row in gates.rows] == ["error"]

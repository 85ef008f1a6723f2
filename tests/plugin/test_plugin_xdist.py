"""`pytest suites/ -n 2`: loadgroup distribution, each checkpoint built exactly once."""

from __future__ import annotations

import json
import re

import pytest

from tests.plugin.suite_texts import TWO_VARIANT_SUITE


@pytest.mark.slow
def test_two_workers_build_each_checkpoint_once(suite_dir: pytest.Pytester) -> None:
    (suite_dir.path / "suites" / "tiny.yaml").write_text(TWO_VARIANT_SUITE)
    report = suite_dir.path / "report"
    result = suite_dir.runpytest_subprocess(
        "suites", "-n", "2", "-v", "--harness-report", str(report)
    )
    result.assert_outcomes(passed=4)
    out = result.stdout.str() + result.stderr.str()
    ran_on: dict[str, set[str]] = {}
    for worker, variant in re.findall(r"\[(gw\d)\].* PASSED suites/tiny\.yaml::([^:]+)::", out):
        ran_on.setdefault(variant, set()).add(worker)
    # every check of a variant runs on the worker that builds it (xdist_group honoured)
    assert {v: len(w) for v, w in ran_on.items()} == {"magnitude-30": 1, "l1-30": 1}, out
    nodeids = {i["nodeid"] for i in json.loads((report / "results.json").read_text())["items"]}
    assert "suites/tiny.yaml::l1-30::clean_map_drop" in nodeids, nodeids
    assert not any("@" in nodeid for nodeid in nodeids), nodeids
    for variant in ("magnitude-30", "l1-30"):
        assert out.count(f"built checkpoint tiny/{variant} ") == 1, out
        assert out.count(f"predicted tiny/{variant} ") == 1, out
    assert out.count("predicted tiny/dense ") == 1, out
    assert "robustness-harness release gates" in out
    memory = [line for line in out.splitlines() if "harness peak memory (RSS): main" in line]
    assert len(memory) == 1 and " gw0 " in memory[0] and " gw1 " in memory[0], memory


def test_work_unit_of_a_gate_is_its_variant(pytester: pytest.Pytester) -> None:
    from robustness_harness_pytest.scheduling import VariantScheduling

    scheduler = VariantScheduling(pytester.parseconfig("--tx", "2*popen"))
    for check in ("map", "pgd@a::int8"):
        assert scheduler._split_scope(f"suites/a.yaml::int8::{check}") == "suites/a.yaml::int8"
    assert scheduler._split_scope("suites/a.yaml::fp32::map") == "suites/a.yaml::fp32"
    # other tests keep loadgroup's rule: the @group suffix, else the whole node id
    assert scheduler._split_scope("tests/test_x.py::test_a@db") == "db"
    assert scheduler._split_scope("tests/test_x.py::test_a") == "tests/test_x.py::test_a"


@pytest.mark.parametrize(
    ("args", "scheduler"), [((), "VariantScheduling"), (("--dist", "load"), None)]
)
def test_plugin_schedules_by_variant_unless_told_otherwise(
    pytester: pytest.Pytester, args: tuple[str, ...], scheduler: str | None
) -> None:
    from robustness_harness_pytest.plugin import pytest_xdist_make_scheduler

    config = pytester.parseconfigure("-n", "2", "--tx", "2*popen", *args)
    made = pytest_xdist_make_scheduler(config, None)
    assert (type(made).__name__ if made is not None else None) == scheduler

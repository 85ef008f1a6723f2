"""``harness compare`` on two real ``pytest suites/ --harness-report`` runs of one tiny
suite: a tightened threshold is a regression, a new check is added, and the unchanged
gate's value is the same to the last bit."""

from __future__ import annotations

import pytest

from robustness_harness.cli import main
from robustness_harness.report.compare import load_results
from tests.plugin.suite_texts import tiny_classifier_suite, write_tiny_classifier


def _run(pytester: pytest.Pytester, out: str, floor: float, extra: str = "") -> int:
    """One ``pytest suites/ --harness-report out`` run of the tiny suite; its exit code."""
    checks = (
        f"  accuracy: {{metric: accuracy, min: 0}}\n  floor: {{metric: accuracy, min: {floor}}}\n"
    )
    (pytester.path / "suites" / "tiny.yaml").write_text(tiny_classifier_suite(checks + extra))
    result = pytester.runpytest_subprocess(
        "suites", "-p", "no:cacheprovider", "--harness-report", out
    )
    return result.ret


@pytest.mark.slow
def test_compare_two_runs(suite_dir: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    write_tiny_classifier(suite_dir)
    assert _run(suite_dir, "before", floor=0) == 0
    assert _run(suite_dir, "after", floor=1.01, extra="  ece: {metric: ece, max: 1}\n") == 1
    before, after = (str(suite_dir.path / name) for name in ("before", "after"))
    capsys.readouterr()  # the two runs' own output
    assert main(["compare", before, after, "--fail-on-regression"]) == 1
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[-1] for line in lines[2:-1]}
    assert rows == {
        "tiny/dense/accuracy": "same",
        "tiny/dense/ece": "added",
        "tiny/dense/floor": "regressed",
    }
    assert lines[-1] == "1 regressed, 0 fixed, 0 changed, 1 same, 1 added, 0 removed"
    values = [load_results(run).gate("tiny", "dense", "accuracy").value for run in (before, after)]
    assert values[0] is not None and values[0] == values[1]

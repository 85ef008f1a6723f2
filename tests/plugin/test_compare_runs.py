"""``harness compare`` on two real ``pytest suites/ --harness-report`` runs of one tiny
suite: a tightened threshold is a regression, a new check is added, and the unchanged
gate's value is the same to the last bit."""

from __future__ import annotations

import pytest
import torch

from robustness_harness.cli import main
from robustness_harness.data.toysigns import TOYSIGNS_CLASSES
from robustness_harness.results_file import load_results

FACTORY = """
from torch import nn


def tiny(num_classes):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))
"""

SUITE = """
suite: tiny
model: {{factory: "tinyfactory:tiny", task: classification, checkpoint: ../w.pt}}
data: {{name: toysigns, split: val, params: {{n_train: 24, n_val: 12}}}}
baseline: dense
variants:
  dense: {{}}
checks:
  accuracy: {{metric: accuracy, min: 0}}
  floor: {{metric: accuracy, min: {floor}}}
{extra}"""


def _run(pytester: pytest.Pytester, out: str, floor: float, extra: str = "") -> int:
    """One ``pytest suites/ --harness-report out`` run of SUITE; its exit code."""
    (pytester.path / "suites" / "tiny.yaml").write_text(SUITE.format(floor=floor, extra=extra))
    result = pytester.runpytest_subprocess(
        "suites", "-p", "no:cacheprovider", "--harness-report", out
    )
    return result.ret


def test_compare_two_runs(suite_dir: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    suite_dir.makepyfile(tinyfactory=FACTORY)
    suite_dir.syspathinsert()
    import tinyfactory  # type: ignore[import-not-found]

    torch.manual_seed(0)
    torch.save(tinyfactory.tiny(len(TOYSIGNS_CLASSES)).state_dict(), suite_dir.path / "w.pt")
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

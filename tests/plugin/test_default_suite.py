"""The shipped release gates are meaningful: a damaged variant fails every check."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # every test here builds or trains a variant

REPO = Path(__file__).resolve().parents[2]


def test_structured_70_without_finetune_fails_the_default_gates(
    pytester: pytest.Pytester, shared_data_root: Path
) -> None:
    suite = yaml.safe_load((REPO / "suites" / "toydrive_detector.yaml").read_text())
    suite.pop("apply", None)  # every check gates the damaged variant
    # the clean-accuracy gates (robustness gates are exercised by their own tests)
    suite["checks"] = {
        name: check
        for name, check in suite["checks"].items()
        if check["metric"] in ("map", "per_class_ap")
    }
    suite["variants"] = {
        "dense": {},
        "structured-70": {"compress": [{"prune": {"method": "l1_filter", "sparsity": 0.7}}]},
    }
    pytester.mkdir("suites")
    (pytester.path / "suites" / "gate.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    result = pytester.runpytest(
        "suites",
        f"--harness-data-root={shared_data_root}",
        f"--harness-cache={pytester.path / 'cache'}",
    )
    result.assert_outcomes(failed=len(suite["checks"]))
    out = result.stdout.str()
    for check in suite["checks"]:
        assert f"structured-70::{check}" in out
    assert "baseline 'dense' | 400 images | seed 0" in out
    assert "worst per-class AP drop" in out and "(class '" in out

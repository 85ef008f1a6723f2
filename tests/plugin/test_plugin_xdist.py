"""`pytest suites/ -n 2`: loadgroup distribution, each checkpoint built exactly once."""

from __future__ import annotations

import pytest

from tests.plugin.suite_texts import TWO_VARIANT_SUITE


def test_two_workers_build_each_checkpoint_once(suite_dir: pytest.Pytester) -> None:
    (suite_dir.path / "suites" / "tiny.yaml").write_text(TWO_VARIANT_SUITE)
    result = suite_dir.runpytest_subprocess("suites", "-n", "2")
    result.assert_outcomes(passed=4)
    out = result.stdout.str() + result.stderr.str()
    for variant in ("magnitude-30", "l1-30"):
        assert out.count(f"built checkpoint tiny/{variant} ") == 1, out
        assert out.count(f"predicted tiny/{variant} ") == 1, out
    assert out.count("predicted tiny/dense ") == 1, out
    assert "robustness-harness release gates" in out
    memory = [line for line in out.splitlines() if "harness peak memory (RSS): main" in line]
    assert len(memory) == 1 and " gw0 " in memory[0] and " gw1 " in memory[0], memory

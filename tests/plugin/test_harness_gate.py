"""``harness_gate`` in a user's Python test: a gate that holds returns its outcome, one
that does not fails the test with the very text its YAML item fails with, an unknown
check is one line with a did-you-mean, and a check for an absent GPU skips."""

from __future__ import annotations

import pytest

from tests.plugin.suite_texts import tiny_classifier_suite, write_tiny_classifier

CHECKS = """\
  accuracy: {metric: accuracy, min: 0}
  floor: {metric: accuracy, min: 1.01}
  on_gpu: {metric: latency_ms, device: "cuda:63", warmup: 0, iters: 1, max: 1000}
"""

GATE_TESTS = """
from robustness_harness_pytest.gate import HarnessGate

SUITE = "suites/tiny.yaml"


def test_holds(harness_gate: HarnessGate) -> None:
    outcome = harness_gate.check(SUITE, "dense", "accuracy")
    assert outcome.passed and outcome.metric == "accuracy"


def test_floor(harness_gate: HarnessGate) -> None:
    harness_gate.check(SUITE, "dense", "floor")


def test_own_assertion(harness_gate: HarnessGate) -> None:
    outcome = harness_gate.outcome(SUITE, "dense", "floor")
    assert not outcome.passed and 0 <= outcome.value <= 1


def test_typo(harness_gate: HarnessGate) -> None:
    harness_gate.check(SUITE, "dense", "flor")


def test_on_gpu(harness_gate: HarnessGate) -> None:
    harness_gate.check(SUITE, "dense", "on_gpu")
"""


def test_harness_gate_fails_as_the_yaml_gate(suite_dir: pytest.Pytester) -> None:
    write_tiny_classifier(suite_dir)
    (suite_dir.path / "suites" / "tiny.yaml").write_text(tiny_classifier_suite(CHECKS))
    suite_dir.makepyfile(test_gates=GATE_TESTS)
    # the Python tests and the suite's own items in one session (one model, one cache)
    result = suite_dir.runpytest("test_gates.py", "suites/tiny.yaml", "-p", "no:cacheprovider")
    reports = {
        r.nodeid.rsplit("::", 1)[-1]: r
        for r in result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
        if r.when == "call" or not r.passed
    }
    outcomes = {name: r.outcome for name, r in reports.items() if name.startswith("test_")}
    assert outcomes == {
        "test_holds": "passed",
        "test_floor": "failed",
        "test_own_assertion": "passed",
        "test_typo": "failed",
        "test_on_gpu": "skipped",
    }
    assert reports["floor"].outcome == "failed"  # the YAML item of the same gate
    message = reports["floor"].longreprtext
    assert message.startswith("accuracy ") and "< min 1.01" in message
    assert reports["test_floor"].longreprtext == message
    out = result.stdout.str()
    assert "Traceback" not in out and "harness_gate.check(" not in out, out
    result.stdout.fnmatch_lines(
        [
            "*_ test_floor _*",
            *message.splitlines(),
            "*_ test_typo _*",
            "*tiny.yaml: 'flor' is not a check of this suite "
            "(fix: did you mean 'floor'? checks: accuracy, floor, on_gpu)",
        ]
    )
    assert "\n" not in reports["test_typo"].longreprtext
    assert "device 'cuda:63' requested but " in reports["test_on_gpu"].longreprtext

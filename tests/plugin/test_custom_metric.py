"""A safety assertion written by a user (the README's example): ``@metric`` in a conftest,
gated from YAML."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.plugin.suite_texts import magnitude, suite_text

REPO = Path(__file__).resolve().parents[2]


def _readme_example() -> str:
    """The ``conftest.py`` of the README's worked example, verbatim."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(# conftest.py\n.*?)```", readme, re.S)
    assert match, "README lost its @metric example"
    return match.group(1)


CONFTEST = _readme_example()

SUITE = suite_text(
    "custom",
    magnitude(30),
    """\
  person_miss: {metric: person_miss_rate, max: 0.9}
  person_miss_strict: {metric: person_miss_rate, score: 0.999, max: 0.01}
""",
)


@pytest.mark.slow
def test_custom_metric_gates_from_yaml(suite_dir: pytest.Pytester) -> None:
    suite_dir.makeconftest(CONFTEST)
    (suite_dir.path / "suites" / "custom.yaml").write_text(SUITE)
    result = suite_dir.runpytest("suites", "--junitxml=junit.xml", "-p", "no:cacheprovider")
    # max thresholds are absolute, so the baseline is gated too: 2 variants × 2 checks
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "custom.yaml::dense::person_miss_strict" in out
    assert "person_miss_rate 1.000" in out and "> max 0.01" in out
    junit = ElementTree.parse(suite_dir.path / "junit.xml")
    values = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in junit.iter("testcase")
    }
    loose = values["person_miss"]
    assert loose["harness_metric"] == "person_miss_rate"
    assert 0.0 <= float(loose["harness_value"]) < 0.9


def _run_edited(suite_dir: pytest.Pytester, old: str, new: str) -> str:
    """Run the suite with ``old`` replaced by ``new`` in its text; return the output."""
    assert old in SUITE
    suite_dir.makeconftest(CONFTEST)
    (suite_dir.path / "suites" / "custom.yaml").write_text(SUITE.replace(old, new))
    return suite_dir.runpytest("suites", "-p", "no:cacheprovider").stdout.str()


def test_custom_metric_unknown_name_suggests(suite_dir: pytest.Pytester) -> None:
    out = _run_edited(
        suite_dir, "metric: person_miss_rate, max: 0.9", "metric: person_mis_rate, max: 0.9"
    )
    assert "did you mean 'person_miss_rate'" in out
    assert "Traceback" not in out


def test_custom_metric_param_is_type_checked(suite_dir: pytest.Pytester) -> None:
    out = _run_edited(suite_dir, "score: 0.999", "score: high")
    assert "checks.person_miss_strict.score" in out
    assert "Traceback" not in out

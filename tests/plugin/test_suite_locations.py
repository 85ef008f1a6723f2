"""Which YAML files are suites: folders named `suites`, command-line files, the ini option."""

from __future__ import annotations

import pytest

from tests.plugin.suite_texts import suite_text

SUITE = suite_text("release", "", "  clean_map: {metric: map, min: 0.0}\n")


def _release(pytester: pytest.Pytester, ini: str = "", notes: bool = False) -> None:
    pytester.makeini(f"[pytest]\n{ini}")
    pytester.mkdir("release")
    (pytester.path / "release" / "gate.yaml").write_text(SUITE)
    if notes:  # a YAML file that is not a suite
        (pytester.path / "release" / "notes.yaml").write_text("owner: ml-team\n")


def test_other_folder_is_not_collected_and_the_hint_says_how(pytester: pytest.Pytester) -> None:
    _release(pytester, notes=True)
    result = pytester.runpytest("release/", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["*release/gate.yaml look like suites but are not collected*"])
    result.stdout.fnmatch_lines(["*harness_suites = release*"])
    assert "notes.yaml" not in result.stdout.str()


@pytest.mark.parametrize("entry", ["release", "release/", "release/*.yaml", "*/gate.yaml"])
def test_ini_option_adds_suite_locations(pytester: pytest.Pytester, entry: str) -> None:
    _release(pytester, f"harness_suites = {entry}\n")
    result = pytester.runpytest("release/", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["release/gate.yaml::dense::clean_map"])


def test_glob_entry_selects_files(pytester: pytest.Pytester) -> None:
    _release(pytester, "harness_suites = release/gate*.yaml\n", notes=True)
    result = pytester.runpytest("release/", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "notes.yaml" not in result.stdout.str()


def test_file_named_on_the_command_line_is_a_suite(pytester: pytest.Pytester) -> None:
    _release(pytester)
    result = pytester.runpytest("release/gate.yaml", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["release/gate.yaml::dense::clean_map"])

"""Factories import from the same places in pytest, python -m pytest and the harness CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from robustness_harness.errors import HarnessError
from robustness_harness.inference.import_paths import factory_search_path, pytest_pythonpath
from robustness_harness.user_code import import_factory

INI_TEXTS = {
    "pytest.ini": "[pytest]\npythonpath = src lib\n",
    "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["src", "lib"]\n',
    "tox.ini": "[pytest]\npythonpath = src lib\n",
    "setup.cfg": "[tool:pytest]\npythonpath = src lib\n",
}


@pytest.mark.parametrize("ini", sorted(INI_TEXTS))
def test_pythonpath_read_from_every_ini_format(tmp_path: Path, ini: str) -> None:
    (tmp_path / ini).write_text(INI_TEXTS[ini])
    (tmp_path / "sub").mkdir()
    assert pytest_pythonpath(tmp_path / "sub") == [tmp_path / "src", tmp_path / "lib"]


def test_non_pytest_files_are_passed_over_like_pytest_does(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\npythonpath = src\n")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no pytest section
    (inner / "setup.cfg").write_text("[metadata]\nname = x\n")
    assert pytest_pythonpath(inner) == [tmp_path / "src"]


def test_search_path_is_pythonpath_then_cwd(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\npythonpath = src\n")
    assert factory_search_path(tmp_path) == [tmp_path / "src", tmp_path.resolve()]


def _user_package(root: Path, name: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    (root / name / "net.py").write_text("def build():\n    return 'built'\n")


def test_factory_in_cwd_imports_without_sys_path_edits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _user_package(tmp_path, "cwdpkg_for_test")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert import_factory("cwdpkg_for_test.net:build")() == "built"


def test_factory_on_ini_pythonpath_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _user_package(tmp_path / "src", "srcpkg_for_test")
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["src"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert import_factory("srcpkg_for_test.net:build")() == "built"


def test_import_error_names_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(HarnessError) as err:
        import_factory("no_such_pkg_xyz.net:build", file="s.yaml")
    text = str(err.value)
    assert "\n" not in text
    assert "cannot import module 'no_such_pkg_xyz.net'" in text
    assert str(tmp_path.resolve()) in text and "pythonpath" in text


def test_harness_show_finds_a_factory_on_the_ini_pythonpath(tmp_path: Path) -> None:
    """The case a conftest's sys.path edit fixed for pytest but not for `harness show`."""
    _user_package(tmp_path / "src", "showpkg_for_test")
    (tmp_path / "src" / "showpkg_for_test" / "net.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Linear(2, 2)\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\npythonpath = src\n")
    (tmp_path / "s.yaml").write_text(
        "suite: s\nmodel: {factory: 'showpkg_for_test.net:build', task: classification}\n"
        "data: {name: toysigns, params: {n_train: 8, n_val: 8}, split: val}\n"
        "baseline: dense\nvariants: {dense: {}}\nchecks: {acc: {metric: accuracy, min: 0}}\n"
    )
    harness = Path(sys.executable).with_name("harness")
    # show needs no weights to print the plan: it is the import check here
    args = [str(harness), "show", "s.yaml", "--cache", str(tmp_path / "cache")]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "cannot import module" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert "showpkg_for_test.net:build" in done.stdout, done.stdout + done.stderr

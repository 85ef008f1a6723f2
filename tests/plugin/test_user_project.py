"""The built wheel, installed non-editable, gates suites from a user's own repository.

The user project has its own ``models/`` package (with the factory under test), its own
``fixtures/`` package and a root ``conftest.py`` that imports both, and ``pythonpath = .``
in its pytest.ini: the situation in which an installed top-level ``models`` or
``fixtures`` package would shadow, or be shadowed by, the user's. Both ``pytest`` and
``python -m pytest`` must run the user's factory and the embedded default in one run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.plugin.suite_texts import suite_text

REPO = Path(__file__).resolve().parents[2]
IMPORT_NAMES = {"robustness_harness", "robustness_harness_models", "robustness_harness_pytest"}

pytestmark = pytest.mark.slow

USER_NET = '''
"""The user's own model package: a small grayscale-agnostic CNN classifier."""
from torch import nn


def build(num_classes: int = 12) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, num_classes),
    )
'''

USER_SUITE = """
suite: user-net
model: {factory: "models.net:build", checkpoint: ../net.safetensors, task: classification}
data: {name: toysigns, params: {n_train: 48, n_val: 24}, split: val}
baseline: dense
variants:
  dense: {}
  pruned:
    compress: [{prune: {method: global_magnitude, sparsity: 0.3}}]
checks:
  accuracy: {metric: accuracy, min: 0.0}
"""

EMBEDDED_SUITE = suite_text("embedded", "", "  clean_map: {metric: map, min: 0.2}\n")


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of the sources (the checkout stays clean)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("harness", "models", "fixtures"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    built = _run([*cmd, "-w", str(out), str(src)], cwd=src, env=dict(os.environ))
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("robustness_harness-*.whl")
    return path


def test_wheel_installs_only_unique_import_names(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        declared = set(zf.read(top_level).decode().split())
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert declared == IMPORT_NAMES
    assert tops == IMPORT_NAMES
    # every sub-package of the source folders made it into the wheel
    for folder, name in (
        ("harness", "robustness_harness"),
        ("models", "robustness_harness_models"),
    ):
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.relative_to(REPO / folder).as_posix()
            assert f"{name}/{rel}" in names, f"{folder}/{rel} is missing from the wheel"
    assert "robustness_harness_models/weights/toydrive-fcos.safetensors" in names


@pytest.fixture(scope="module")
def wheel_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed, its dependencies seen through a .pth file
    (the checkout's editable-install finder is not active there)."""
    venv = tmp_path_factory.mktemp("venv")
    made = _run([sys.executable, "-m", "venv", str(venv)], cwd=venv, env=dict(os.environ))
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=venv,
        env=dict(os.environ),
    ).stdout.strip()
    Path(purelib, "harness_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)]
    installed = _run(pip, cwd=venv, env=dict(os.environ))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # pytest itself comes through the .pth file; give the venv its console script too
    script = venv / "bin" / "pytest"
    script.write_text(
        f"#!{python}\nimport sys\nfrom pytest import console_main\nsys.exit(console_main())\n"
    )
    script.chmod(0o755)
    return venv


@pytest.fixture
def user_project(tmp_path: Path, wheel_env: Path) -> Path:
    """A user repository: own models/ (the factory), own fixtures/, a root conftest."""
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "__init__.py").write_text("")
    (project / "models" / "net.py").write_text(USER_NET)
    (project / "fixtures").mkdir()
    (project / "fixtures" / "__init__.py").write_text("")
    (project / "fixtures" / "helpers.py").write_text("OWNER = 'user'\n")
    (project / "conftest.py").write_text(
        "from fixtures.helpers import OWNER\nfrom models.net import build\n\n"
        "assert OWNER == 'user' and callable(build)\n"
    )
    (project / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    (project / "suites").mkdir()
    (project / "suites" / "user.yaml").write_text(USER_SUITE)
    (project / "suites" / "embedded.yaml").write_text(EMBEDDED_SUITE)
    python = wheel_env / "bin" / "python"
    save = (
        "import torch; from safetensors.torch import save_file; from models.net import build;"
        "torch.manual_seed(0); save_file(build().state_dict(), 'net.safetensors')"
    )
    saved = _run([str(python), "-c", save], cwd=project, env=dict(os.environ))
    assert saved.returncode == 0, saved.stderr
    return project


def _env(wheel_env: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HARNESS_CACHE")}
    return {**env, "PATH": f"{wheel_env / 'bin'}{os.pathsep}{env.get('PATH', '')}"}


@pytest.mark.parametrize("launcher", ["pytest", "python -m pytest"])
def test_user_project_runs_own_factory_and_embedded_default(
    launcher: str, user_project: Path, wheel_env: Path, shared_data_root: Path
) -> None:
    env = _env(wheel_env)
    bin_dir = wheel_env / "bin"
    cmd = (
        [str(bin_dir / "pytest")]
        if launcher == "pytest"
        else [str(bin_dir / "python"), "-m", "pytest"]
    )
    args = ["suites/", "-v", "-p", "no:cacheprovider", "--harness-limit", "8"]
    args += [
        "--harness-cache",
        str(user_project / "cache"),
        "--harness-data-root",
        str(shared_data_root),
    ]
    done = _run([*cmd, *args], cwd=user_project, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "3 passed" in out, out
    assert "suites/user.yaml::pruned::accuracy PASSED" in out, out
    assert "suites/embedded.yaml::dense::clean_map PASSED" in out, out
    where = _run(
        [str(bin_dir / "python"), "-c", "import robustness_harness as h; print(h.__file__)"],
        cwd=user_project,
        env=env,
    ).stdout
    assert str(wheel_env) in where, f"the wheel is not what ran: {where}"


def test_harness_show_and_validate_find_the_user_factory(
    user_project: Path, wheel_env: Path, shared_data_root: Path
) -> None:
    env = _env(wheel_env)
    harness = str(wheel_env / "bin" / "harness")
    valid = _run([harness, "validate", "suites/"], cwd=user_project, env=env)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    cache = ["--cache", str(user_project / "cache"), "--data-root", str(shared_data_root)]
    shown = _run([harness, "show", "suites/user.yaml", *cache], cwd=user_project, env=env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "models.net:build" in shown.stdout

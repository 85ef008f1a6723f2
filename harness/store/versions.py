"""Version stamps that go into cache keys, baseline snapshots and reports."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@cache
def package_version(name: str) -> str:
    """Installed version of distribution ``name``, or ``"unknown"``."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def stamps() -> dict[str, str]:
    """Versions that change numbers: harness, torch, torchvision, pycocotools."""
    return {
        name: package_version(dist)
        for name, dist in (
            ("harness", "robustness-harness"),
            ("torch", "torch"),
            ("torchvision", "torchvision"),
            ("pycocotools", "pycocotools"),
        )
    }


@cache
def git_commit(where: Path | None = None) -> str:
    """The commit checked out at ``where`` (default: the working directory), with a
    ``+dirty`` suffix when tracked files have changes; ``"unknown"`` outside git."""
    cwd = str(where) if where is not None else None

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")

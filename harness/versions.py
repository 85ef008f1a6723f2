"""Version stamps that go into cache keys and reports."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version


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

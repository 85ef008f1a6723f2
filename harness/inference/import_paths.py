"""Where a suite's ``model.factory`` is imported from, the same in every entry point.

``pytest``, ``python -m pytest``, ``harness show`` and ``harness validate`` import a
factory from the same places: the entries of the governing pytest ini file's
``pythonpath`` setting (relative to that file, as pytest reads them), then the current
directory. ``python -m pytest`` puts the current directory on ``sys.path`` and plain
``pytest`` does not; adding both here makes the four agree.
"""

from __future__ import annotations

import configparser
import importlib
import sys
import tomllib
from pathlib import Path

_INI_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def _ini_pythonpath(path: Path) -> list[str] | None:
    """The ``pythonpath`` entries of one candidate ini file, or None when that file
    is not a pytest configuration (pytest then keeps looking upwards)."""
    try:
        if path.name == "pyproject.toml":
            tool = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {})
            section = tool.get("pytest", {}).get("ini_options")
            if section is None:
                return None
            value = section.get("pythonpath", [])
            return value.split() if isinstance(value, str) else [str(v) for v in value]
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path, encoding="utf-8")
    except (OSError, ValueError, configparser.Error):
        return None
    name = {"tox.ini": "pytest", "setup.cfg": "tool:pytest"}.get(path.name, "pytest")
    if not parser.has_section(name):
        return [] if path.name in ("pytest.ini", ".pytest.ini") else None
    return parser.get(name, "pythonpath", fallback="").split()


def pytest_pythonpath(start: Path) -> list[Path]:
    """The ``pythonpath`` setting of the first pytest ini file at or above ``start``."""
    for folder in (start, *start.parents):
        for name in _INI_FILES:
            candidate = folder / name
            if candidate.is_file():
                entries = _ini_pythonpath(candidate)
                if entries is not None:
                    return [(folder / entry).resolve() for entry in entries]
    return []


def factory_search_path(cwd: Path | None = None) -> list[Path]:
    """The folders factories are imported from: pytest's ``pythonpath``, then ``cwd``."""
    here = (cwd or Path.cwd()).resolve()
    return [*pytest_pythonpath(here), here]


def ensure_importable(folders: list[Path]) -> None:
    """Put ``folders`` at the front of ``sys.path`` (in order), skipping those present."""
    present = {str(Path(p).resolve()) for p in sys.path if p}
    missing = [str(f) for f in folders if str(f) not in present]
    if missing:
        sys.path[:0] = missing
        importlib.invalidate_caches()

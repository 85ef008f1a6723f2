"""The Python source a model comes from, as a digest for cache keys (DESIGN.md section 5).

A factory ``"pkg.mod:fn"`` (or a registered model's builder) is keyed on every ``.py``
file of its top-level package ``pkg`` (or on the single module file when it is not in a
package): editing any of them, e.g. adding normalisation, gives new checkpoint and
prediction keys. Packages whose version is already stamped into every key (torch,
torchvision) are not read.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Iterable
from pathlib import Path

STAMPED_PACKAGES = frozenset({"torch", "torchvision"})
"""Top-level packages covered by ``versions.stamps()`` instead of by their source."""


def source_roots(module_name: str) -> list[Path]:
    """The directories (a package, possibly a namespace package split over several) or
    the single file holding the source of ``module_name``'s top-level package; empty for
    stamped packages and modules without files (builtins)."""
    top = module_name.partition(".")[0]
    if top in STAMPED_PACKAGES:
        return []
    module = sys.modules.get(top) or importlib.import_module(top)
    locations = getattr(module, "__path__", None)
    if locations is not None:
        return sorted({Path(p).resolve() for p in locations})
    file = getattr(module, "__file__", None)
    return [Path(file).resolve()] if file else []


def source_files(root: Path) -> list[tuple[str, Path]]:
    """``(relative posix path, file)`` of every ``.py`` file under ``root`` (a directory),
    sorted; a file root is itself, by name."""
    if root.is_file():
        return [(root.name, root)]
    files = (p for p in root.rglob("*.py") if "__pycache__" not in p.parts and p.is_file())
    return sorted((p.relative_to(root).as_posix(), p) for p in files)


def digest_files(files: Iterable[tuple[str, Path]]) -> str:
    """sha256 over each file's relative path and content, in the given order."""
    h = hashlib.sha256()
    for name, path in files:
        content = path.read_bytes()
        h.update(f"{name}\0{len(content)}\0".encode())
        h.update(content)
    return h.hexdigest()


def source_digest(root: Path) -> str:
    """The digest of the ``.py`` source under ``root`` (see ``source_files``)."""
    return digest_files(source_files(root))

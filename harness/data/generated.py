"""Datasets generated from a seed: parameter checks and a write-once directory.

A generator writes ``train.json``, ``val.json`` (COCO) and ``images/`` into a temporary
directory that is renamed into place under a file lock, last of all a ``done.json``
marker (generator, version, parameters, counts, sha256 of the json files), so
concurrent callers (xdist workers) generate once and a killed run leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from filelock import FileLock

from robustness_harness.errors import DataError

SPLITS = ("train", "val")
Progress = Callable[[str], None] | None
SplitWriter = Callable[[Path, str, int, dict[str, int], Progress], tuple[list, list]]
"""``write(root, split, split_index, params, progress) -> (images, annotations)``: writes
the split's image files under ``root / "images"`` and returns its COCO entries."""

_NO_GENERATION: ContextVar[bool] = ContextVar("no_generation", default=False)


@contextmanager
def no_generation() -> Iterator[None]:
    """Within this block, asking for data that is not generated yet raises ``DataError``
    instead of generating it (``harness show`` inspects without building)."""
    token = _NO_GENERATION.set(True)
    try:
        yield
    finally:
        _NO_GENERATION.reset(token)


@dataclass(frozen=True)
class GeneratedDataset:
    """One generator: its name, version, category list and smallest image size."""

    name: str
    version: str
    categories: list[dict[str, Any]]
    min_image_size: int

    def params(self, seed: int, n_train: int, n_val: int, image_size: int) -> dict[str, int]:
        """Validated parameters (``DataError`` naming ``data.params.<name>`` otherwise)."""
        for key, value, low in (
            ("seed", seed, 0),
            ("n_train", n_train, 0),
            ("n_val", n_val, 0),
            ("image_size", image_size, self.min_image_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise DataError(
                    f"{self.name} parameter {key}={value!r} is invalid",
                    field=f"data.params.{key}",
                    hint=f"use an integer >= {low}",
                )
        return {"seed": seed, "n_train": n_train, "n_val": n_val, "image_size": image_size}

    def marker(self, params: dict[str, int]) -> dict[str, Any]:
        return {"generator": self.name, "generator_version": self.version, "params": params}

    @staticmethod
    def paths(out_dir: Path) -> dict[str, Path]:
        """Each split's json and the ``images`` directory of a dataset in ``out_dir``."""
        out_dir = Path(out_dir)
        return {**{s: out_dir / f"{s}.json" for s in SPLITS}, "images": out_dir / "images"}

    def is_complete(self, out_dir: Path, params: dict[str, int]) -> bool:
        try:
            done = json.loads((Path(out_dir) / "done.json").read_text())
            return done["marker"] == self.marker(params)
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def generate(
        self, out_dir: Path, params: dict[str, int], write: SplitWriter, progress: Progress
    ) -> dict[str, Path]:
        """Write the dataset into ``out_dir`` atomically unless it is already complete."""
        out_dir = Path(out_dir)
        if self.is_complete(out_dir, params):
            return self.paths(out_dir)
        if _NO_GENERATION.get():
            raise DataError(
                f"{self.name} data is not generated yet",
                file=out_dir,
                hint="run the suite once (pytest) or `harness gen-data`",
            )
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(out_dir.parent / f".{out_dir.name}.lock")):
            if self.is_complete(out_dir, params):
                return self.paths(out_dir)
            tmp = out_dir.parent / f".{out_dir.name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a crashed run
            self._write(tmp, params, write, progress)
            if out_dir.exists():  # stale: another version or other parameters
                trash = out_dir.parent / f".{out_dir.name}.old"
                shutil.rmtree(trash, ignore_errors=True)
                os.replace(out_dir, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, out_dir)
        return self.paths(out_dir)

    def _write(
        self, root: Path, params: dict[str, int], write: SplitWriter, progress: Progress
    ) -> None:
        counts = {}
        for split_index, split in enumerate(SPLITS):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            images, annotations = write(root, split, split_index, params, progress)
            doc = {
                "info": {"description": f"{self.name} {split}", **self.marker(params)},
                "images": images,
                "annotations": annotations,
                "categories": self.categories,
            }
            (root / f"{split}.json").write_text(json.dumps(doc, separators=(",", ":")))
            counts[split] = {"images": len(images), "annotations": len(annotations)}
        digest = {s: _sha256(root / f"{s}.json") for s in SPLITS}
        versions = {"numpy": np.__version__, "pillow": PIL.__version__}
        done = {"marker": self.marker(params), "counts": counts, "sha256": digest}
        (root / "done.json").write_text(
            json.dumps({**done, "versions": versions}, indent=1, sort_keys=True)
        )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

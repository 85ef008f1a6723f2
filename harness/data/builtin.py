"""The built-in datasets toydrive and toysigns: functions ``(root, **params) -> {split: data}``
where data is a ``CocoDetectionData`` (detection) or a ``ClassificationData``
(classification).

``robustness_harness.registry.DATASETS`` finds them through the
``robustness_harness.datasets`` entry points in pyproject.toml.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from robustness_harness.data import toysigns
from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.data.generated import SPLITS
from robustness_harness.data.toydrive import GENERATOR_VERSION, generate_toydrive


def _versioned_dir(root: Path, name: str, version: str, params: dict[str, int]) -> Path:
    """``root/<name>-v<version>-<digest>``: one directory per generator version and params."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    return Path(root) / f"{name}-v{version}-{digest}"


def toydrive_dir(
    root: Path, *, seed: int = 0, n_train: int = 2000, n_val: int = 400, image_size: int = 128
) -> Path:
    """Where ``toydrive_dataset`` keeps the data for these parameters under ``root``."""
    params = {"seed": seed, "n_train": n_train, "n_val": n_val, "image_size": image_size}
    return _versioned_dir(root, "toydrive", GENERATOR_VERSION, params)


def toydrive_dataset(
    root: Path, *, seed: int = 0, n_train: int = 2000, n_val: int = 400, image_size: int = 128
) -> dict[str, CocoDetectionData]:
    """The toydrive ``train`` and ``val`` splits, generated under ``root`` on first use."""
    params = {"seed": seed, "n_train": n_train, "n_val": n_val, "image_size": image_size}
    paths = generate_toydrive(toydrive_dir(root, **params), **params)
    return {split: CocoDetectionData.load(paths["images"], paths[split]) for split in SPLITS}


def toysigns_dir(
    root: Path, *, seed: int = 0, n_train: int = 6000, n_val: int = 1000, image_size: int = 32
) -> Path:
    """Where ``toysigns_dataset`` keeps the data for these parameters under ``root``."""
    params = {"seed": seed, "n_train": n_train, "n_val": n_val, "image_size": image_size}
    return _versioned_dir(root, "toysigns", toysigns.GENERATOR_VERSION, params)


def toysigns_dataset(
    root: Path, *, seed: int = 0, n_train: int = 6000, n_val: int = 1000, image_size: int = 32
) -> dict[str, ClassificationData]:
    """The toysigns ``train`` and ``val`` splits, generated under ``root`` on first use."""
    params = {"seed": seed, "n_train": n_train, "n_val": n_val, "image_size": image_size}
    paths = toysigns.generate_toysigns(toysigns_dir(root, **params), **params)
    return {split: ClassificationData.load(paths["images"], paths[split]) for split in SPLITS}

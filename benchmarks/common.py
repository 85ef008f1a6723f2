"""Shared pieces of the benchmark scripts: the trained toy-drive detector and its data."""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from robustness_harness.data.builtin import toydrive_dataset
from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.store.cache import DEFAULT_DIR, ENV_VAR
from robustness_harness_models.toydrive import (
    WEIGHTS_FILE,
    build_toydrive_fcos,
    verified_shipped_weights,
)


def trained_toydrive_fcos() -> nn.Module:
    """The shipped toydrive-fcos weights (sha256-verified), so post-processing sees
    realistic detections; random init if they are absent."""
    model = build_toydrive_fcos()
    if WEIGHTS_FILE.exists():
        model.load_state_dict(load_file(verified_shipped_weights()))
    return model.eval()


def default_data_root() -> Path:
    """``<cache>/data``, where the harness keeps generated datasets (reused if present)."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR) / "data"


def toydrive_val(root: Path | None = None, n_val: int = 400) -> CocoDetectionData:
    """The toydrive validation split (default parameters: the one the suites use)."""
    return toydrive_dataset(root or default_data_root(), n_val=n_val)["val"]

"""Metrics on resampled image multisets, for bootstrap confidence intervals.

``resampled_values(info, task, inputs, params)`` returns ``values(counts)`` for a
registered metric: its own ``Resampler`` (e.g. COCO mAP, ``coco_resample``) or, for
``RECOMPUTE`` metrics, the metric called again on an ``ImageMultiset`` view per resample.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from robustness_harness.errors import HarnessError
from robustness_harness.metrics.base import RECOMPUTE, MetricInfo, MetricInputs, Resampled


class ImageMultiset:
    """A view of classification data whose ``image_ids`` may repeat an image.

    Everything else (labels, classes, categories, images) comes from ``data``;
    ``labels()`` without arguments follows the multiset.
    """

    def __init__(self, data: Any, image_ids: list[int]) -> None:
        self._data = data
        self.image_ids = image_ids

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)

    def __len__(self) -> int:
        return len(self.image_ids)

    def labels(self, image_ids: Any = None) -> np.ndarray:
        return self._data.labels(self.image_ids if image_ids is None else image_ids)


def resampled_values(
    info: MetricInfo, task: str, inputs: MetricInputs, params: dict[str, Any]
) -> Resampled:
    """``values(counts)`` of metric ``info`` on ``inputs`` (counts over ``inputs.data``).

    Raises ``HarnessError`` if the metric cannot be resampled for ``task``.
    """
    if not info.resamplable(task):
        raise HarnessError(
            f"metric '{info.name}' cannot be recomputed on resampled images for a {task} model",
            field="confidence",
            hint="remove confidence from the check",
        )
    if info.resample != RECOMPUTE:
        return info.prepare_resampling(inputs, **params)
    data = inputs.data
    ids = np.asarray(data.image_ids)

    def values(counts: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        out = [
            info(
                dataclasses.replace(inputs, data=ImageMultiset(data, np.repeat(ids, row).tolist())),
                **params,
            ).value
            for row in counts
        ]
        return stack_values(out)

    return values


def stack_values(values: list[Any]) -> np.ndarray | dict[str, np.ndarray]:
    """Per-resample values → (B,) array, or per class (B,) arrays (missing → NaN)."""
    if values and isinstance(values[0], dict):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: np.array([v.get(k, math.nan) for v in values], np.float64) for k in keys}
    return np.asarray(values, dtype=np.float64)

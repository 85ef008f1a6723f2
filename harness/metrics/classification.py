"""Classification metrics: top-1 accuracy overall and per class.

Predictions are aligned with the data by image id (``preds.subset(data.image_ids)``),
so their order does not matter; every image of the data needs a prediction.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from robustness_harness.errors import DataError
from robustness_harness.inference.predictions import ClassPredictions
from robustness_harness.metrics.base import RECOMPUTE
from robustness_harness.registry import register_metric


class ClassTargets(Protocol):
    """What the classification metrics need of a dataset (``ClassificationData``)."""

    image_ids: list[int]
    categories: list[dict[str, Any]]
    class_names: list[str]

    @property
    def num_classes(self) -> int: ...

    def labels(self, image_ids: Any = None) -> np.ndarray: ...


def aligned(preds: ClassPredictions, data: ClassTargets) -> ClassPredictions:
    """The rows of ``preds`` for ``data.image_ids``, in data order.

    Raises ``DataError`` when an image has no prediction or the logits do not have one
    column per class of ``data``.
    """
    try:
        out = preds.subset(data.image_ids)
    except KeyError as err:
        raise DataError(
            f"predictions do not cover the evaluation images ({err.args[0]})",
            field="predictions",
            hint="predict every image of the data (or rebuild the cached predictions)",
        ) from None
    if out.logits.shape[1] != data.num_classes:
        raise DataError(
            f"logits have {out.logits.shape[1]} columns but the data has "
            f"{data.num_classes} classes",
            field="predictions",
            hint="build the classifier with one output per category of the dataset",
        )
    return out


def class_keys(data: ClassTargets) -> list[str]:
    """Class names by class index; a name shared by several ids gets `` (id N)``."""
    names = list(data.class_names)
    ids = [int(c["id"]) for c in data.categories]
    return [f"{n} (id {i})" if names.count(n) > 1 else n for n, i in zip(names, ids, strict=True)]


def correct(preds: ClassPredictions, data: ClassTargets) -> np.ndarray:
    """Per image of ``data`` (in order): whether the top-1 class is the label (bool)."""
    return aligned(preds, data).top1 == data.labels(data.image_ids)


def per_class_accuracies(preds: ClassPredictions, data: ClassTargets) -> dict[str, float]:
    """Top-1 accuracy over the images of each class, by ``class_keys``; NaN if none."""
    hits = correct(preds, data)
    labels = data.labels(data.image_ids)
    out: dict[str, float] = {}
    for k, key in enumerate(class_keys(data)):
        mine = labels == k
        out[key] = float(hits[mine].mean()) if mine.any() else math.nan
    return out


@register_metric("accuracy", task="classification", resample=RECOMPUTE)
def accuracy(preds: ClassPredictions, data: ClassTargets) -> float:
    """Top-1 accuracy: the fraction of images whose highest logit is their label."""
    hits = correct(preds, data)
    return float(hits.mean()) if hits.size else math.nan


@register_metric("per_class_accuracy", task="classification", per_class=True, resample=RECOMPUTE)
def per_class_accuracy(preds: ClassPredictions, data: ClassTargets) -> dict[str, float]:
    """Top-1 accuracy per class name (NaN for a class without images)."""
    return per_class_accuracies(preds, data)

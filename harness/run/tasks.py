"""What differs between detection and classification: data, inference, training, score.

Everything else (compression, caching, checks) is shared; the session picks a
``TaskOps`` by the suite's task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.inference.evaluate import predict_classes, predict_detections
from robustness_harness.train.finetune import (
    Regularizer,
    TrainRecipe,
    load_training_set,
    train_detector,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TaskOps:
    """The task-specific operations the session needs."""

    name: str
    primary_metric: str
    """The clean score corruption metrics are built on (P, mPC): ``map`` or ``accuracy``."""
    load_data: Callable[[Path, Path], Any]
    predict: Callable[..., Any]
    train: Callable[..., Any]
    """``train(model, data, recipe, device, progress, regularizer=None)``: in place."""
    data_type: type


def _train_detection(
    model: nn.Module,
    data: CocoDetectionData,
    recipe: TrainRecipe,
    device: torch.device,
    progress: Progress,
    regularizer: Regularizer | None = None,
) -> Any:
    items = _training_items(data)
    return train_detector(
        model, items, recipe, device=device, progress=progress, regularizer=regularizer
    )


def _training_items(data: CocoDetectionData) -> Any:
    """Decoded training images and targets (labels in the data's ``label_space``), kept in
    the data's ``derived`` dict for its last view (schedules such as AGP train in many
    short bursts)."""
    key = f"{data.fingerprint}:{data.label_space.kind}"
    kept = data.derived.get("training_items")
    if kept is None or kept[0] != key:
        kept = data.derived["training_items"] = (key, load_training_set(data))
    return kept[1]


def _train_classification(
    model: nn.Module,
    data: ClassificationData,
    recipe: TrainRecipe,
    device: torch.device,
    progress: Progress,
    regularizer: Regularizer | None = None,
) -> Any:
    from robustness_harness.train.classify import train_classifier

    # no mirror images: signs, digits and arrows are not left-right symmetric
    recipe = dataclasses.replace(recipe, hflip=False)
    return train_classifier(
        model, data, recipe, device=device, progress=progress, regularizer=regularizer
    )


TASKS: dict[str, TaskOps] = {
    "detection": TaskOps(
        name="detection",
        primary_metric="map",
        load_data=CocoDetectionData.load,
        predict=predict_detections,
        train=_train_detection,
        data_type=CocoDetectionData,
    ),
    "classification": TaskOps(
        name="classification",
        primary_metric="accuracy",
        load_data=ClassificationData.load,
        predict=predict_classes,
        train=_train_classification,
        data_type=ClassificationData,
    ),
}

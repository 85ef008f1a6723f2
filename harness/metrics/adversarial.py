"""Adversarial robustness metrics: accuracy under PGD/FGSM and COCO mAP under PGD.

All attacks are L∞ on images in [0, 1] (models contain their normalisation), seeded per
batch from the context seed (``robustness_harness.perturb.attacks.attack_seed``). A
quantized model is attacked through its fake-quant twin (``ctx.twin``) and evaluated itself on the
adversarial images; the result's note says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from robustness_harness.inference.evaluate import to_detections
from robustness_harness.inference.predictions import DetectionPredictions, Detections
from robustness_harness.metrics.base import MetricResult, NonNegative, Positive, PositiveInt
from robustness_harness.metrics.coco_memo import coco_memo
from robustness_harness.metrics.context import ModelContext
from robustness_harness.metrics.detection import coco_evaluate
from robustness_harness.perturb.attacks import (
    ClassifierAttack,
    attack_classifier,
    attack_detector,
    attack_seed,
    modes_restored,
    validate_attack_params,
)
from robustness_harness.registry import register_metric

TWIN_NOTE = "attacked through the fake-quant twin"


# -- shared helpers --------------------------------------------------------------------------


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1 (e.g. 16), got {batch_size!r}")


def _image_ids(ctx: ModelContext) -> list[int]:
    """Every image of the check's data (a check caps them with ``images:``)."""
    ids = list(ctx.data.image_ids)
    if not ids:
        raise ValueError("the evaluation data has no images to attack")
    return ids


def _batches(ids: list[int], batch_size: int) -> Iterator[tuple[int, list[int]]]:
    """``(batch index, image ids)`` in order."""
    for index, first in enumerate(range(0, len(ids), batch_size)):
        yield index, ids[first : first + batch_size]


def _attacked_model(ctx: ModelContext) -> tuple[nn.Module, str]:
    """The model gradients are taken of, and the note for the result."""
    if ctx.twin is not None:
        return ctx.twin, TWIN_NOTE
    return ctx.model, ""


# -- classifiers -----------------------------------------------------------------------------


def _batch_tensor(ctx: ModelContext, ids: list[int]) -> torch.Tensor:
    images = ctx.images(ids)
    if not isinstance(images, torch.Tensor):
        raise ValueError("classifier attacks need images of one size; this data mixes sizes")
    return images


def _correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    with modes_restored(model), torch.no_grad():
        model.eval()
        return int((model(images).argmax(dim=1) == labels).sum())


def _classifier_attack(
    ctx: ModelContext, method: ClassifierAttack, batch_size: int, **attack: Any
) -> MetricResult:
    """Accuracy of ``ctx.model`` on adversarial versions of the images of ``ctx.data``."""
    _check_batch_size(batch_size)
    ids = _image_ids(ctx)
    attacked, note = _attacked_model(ctx)
    clean = robust = 0
    for index, chunk in _batches(ids, batch_size):
        x = _batch_tensor(ctx, chunk)
        y = torch.as_tensor(np.asarray(ctx.data.labels(chunk)), dtype=torch.int64)
        adv = attack_classifier(
            attacked, x, y, method=method, seed=attack_seed(ctx.seed, index), **attack
        )
        y = y.to(ctx.device)
        clean += _correct(ctx.model, x, y)
        robust += _correct(ctx.model, adv.to(ctx.device), y)
    details = {
        "clean_accuracy": clean / len(ids),
        "eps": attack["eps"],
        "steps": attack.get("steps", 1),
        "n": len(ids),
    }
    return MetricResult(robust / len(ids), details, note)


@register_metric(
    "pgd_accuracy", task="classification", inputs="model", higher_is_better=True, cacheable=True
)
def pgd_accuracy(
    ctx: ModelContext,
    *,
    eps: NonNegative = 8 / 255,
    alpha: Positive = 2 / 255,
    steps: PositiveInt = 10,
    random_start: bool = True,
    batch_size: PositiveInt = 64,
) -> MetricResult:
    """Top-1 accuracy under L∞ PGD (torchattacks) with radius ``eps`` on [0, 1] images."""
    validate_attack_params(eps=eps, alpha=alpha, steps=steps)
    return _classifier_attack(
        ctx, "pgd", batch_size, eps=eps, alpha=alpha, steps=steps, random_start=random_start
    )


@register_metric(
    "fgsm_accuracy", task="classification", inputs="model", higher_is_better=True, cacheable=True
)
def fgsm_accuracy(
    ctx: ModelContext,
    *,
    eps: NonNegative = 8 / 255,
    batch_size: PositiveInt = 64,
) -> MetricResult:
    """Top-1 accuracy under FGSM (torchattacks, one signed-gradient step of size ``eps``)."""
    validate_attack_params(eps=eps)
    return _classifier_attack(ctx, "fgsm", batch_size, eps=eps)


# -- detectors -------------------------------------------------------------------------------


def _image_list(ctx: ModelContext, ids: list[int]) -> list[torch.Tensor]:
    images = ctx.images(ids)
    return list(images.unbind(0)) if isinstance(images, torch.Tensor) else images


def _detect(
    model: nn.Module, images: list[torch.Tensor], ids: list[int], data: Any, device: torch.device
) -> dict[int, Detections]:
    """Eval-mode detections of float images (as ``predict_detections`` converts them)."""
    with modes_restored(model), torch.inference_mode():
        model.eval()
        outputs = model([img.to(device) for img in images])
    return {i: to_detections(o, data.label_space) for i, o in zip(ids, outputs, strict=True)}


def _coco_map(data: Any, by_image: dict[int, Detections], ids: list[int]) -> float:
    """COCO AP@[.5:.95] (the ``map`` metric) on ``ids``; NaN without ground truth."""
    value = float(
        coco_evaluate(
            data.coco_gt(), DetectionPredictions(by_image), image_ids=ids, memo=coco_memo(data)
        ).stats[0]
    )
    return math.nan if value == -1 else value


@register_metric("pgd_map", task="detection", inputs="model", higher_is_better=True, cacheable=True)
def pgd_map(
    ctx: ModelContext,
    *,
    eps: NonNegative = 2 / 255,
    alpha: Positive = 0.5 / 255,
    steps: PositiveInt = 10,
    random_start: bool = True,
    batch_size: PositiveInt = 16,
) -> MetricResult:
    """COCO mAP under L∞ PGD that maximises the sum of the detector's training losses.

    Each image is attacked against its own ground truth (images without any stay
    clean); norm layers and dropout stay in eval mode during the attack.
    """
    validate_attack_params(eps=eps, alpha=alpha, steps=steps)
    _check_batch_size(batch_size)
    ids = _image_ids(ctx)
    attacked, note = _attacked_model(ctx)
    clean: dict[int, Detections] = {}
    robust: dict[int, Detections] = {}
    for index, chunk in _batches(ids, batch_size):
        x = _image_list(ctx, chunk)
        targets = [ctx.data.target(i) for i in chunk]
        adv = attack_detector(
            attacked,
            x,
            targets,
            eps=eps,
            alpha=alpha,
            steps=steps,
            random_start=random_start,
            seed=attack_seed(ctx.seed, index),
        )
        clean.update(_detect(ctx.model, x, chunk, ctx.data, ctx.device))
        robust.update(_detect(ctx.model, adv, chunk, ctx.data, ctx.device))
    details = {
        "clean_map": _coco_map(ctx.data, clean, ids),
        "eps": eps,
        "steps": steps,
        "n": len(ids),
    }
    return MetricResult(_coco_map(ctx.data, robust, ids), details, note)

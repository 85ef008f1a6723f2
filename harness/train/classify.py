"""Training and fine-tuning of image classifiers on COCO-form classification data.

The loop mirrors ``robustness_harness.train.finetune`` (AdamW, linear warm-up then cosine decay,
drop-last shuffled batches, gradient clipping, all randomness from ``recipe.seed``
inside a forked RNG), with cross-entropy on the class index. Every image is decoded
once into one uint8 tensor. Augmentation is a light random affine per image
(translation, scale, a few degrees of rotation), batched through ``affine_grid`` /
``grid_sample`` (per-image ``torchvision.transforms.v2.RandomAffine`` costs ~1.5 ms an
image on CPU, more than the training step); a horizontal flip only when
``recipe.hflip`` is set, because flips change the meaning of arrows and digits.
``recipe.augment: naturalistic`` adds the photometric steps of ``robustness_harness.train.augment``
per image; class-balancing samplers either resample images (``rfs``) or weight the
cross-entropy per class (``inv``, ``inv_cap``, ``ens``: the mean over the batch of
``w_y · CE``, the paper's eq. 4); ``recipe.adversarial`` trains on adversarial batches.

Models take float images in [0, 1] (N, 3, H, W) and return logits (N, K); any input
normalisation lives inside the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robustness_harness.errors import DataError
from robustness_harness.perturb.attacks import attack_seed
from robustness_harness.train.adversarial_finetune import perturb_classification_batch
from robustness_harness.train.augment import augment_batch, photometric
from robustness_harness.train.finetune import (
    Regularizer,
    TrainRecipe,
    TrainResult,
    lr_factor,
    total_steps,
)
from robustness_harness.train.samplers import balancing, loss_weight_tensor, sampled_batches


class LabelledImages(Protocol):
    """What training needs of a dataset (``robustness_harness.data.ClassificationData`` fits)."""

    image_ids: list[int]

    def load_image(self, image_id: int) -> np.ndarray: ...

    def label(self, image_id: int) -> int: ...


def load_classification_set(
    data: LabelledImages, image_ids: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image as one uint8 ``(N, 3, H, W)`` tensor and the labels as int64 ``(N,)``.

    All images must have the same size (a ``DataError`` says which differ).
    """
    ids = list(data.image_ids if image_ids is None else image_ids)
    if not ids:
        return torch.zeros((0, 3, 0, 0), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    arrays = [data.load_image(i) for i in ids]
    for image_id, array in zip(ids, arrays, strict=True):
        if array.shape != arrays[0].shape:
            raise DataError(
                f"image {image_id} has shape {array.shape} but image {ids[0]} has "
                f"{arrays[0].shape}; classifier training needs images of one size",
                file=getattr(data, "annotations_file", None),
                field="images",
                hint="resize the training images to one size",
            )
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([data.label(i) for i in ids], dtype=torch.int64)
    return images, labels


#: Augmentation ranges: rotation (degrees), translation (fraction of the size), scale.
AUG_DEGREES = 8.0
AUG_TRANSLATE = 0.08
AUG_SCALE = 0.1


def random_affine(images: torch.Tensor, *, hflip: bool = False) -> torch.Tensor:
    """Each float ``(N, C, H, W)`` image under its own random rotation, shift and scale
    (and a horizontal flip with probability 1/2 if ``hflip``); borders are replicated.

    Parameters are drawn on CPU from the global torch RNG (seed it, or fork it).
    """
    n = len(images)
    angle = (torch.rand(n) * 2 - 1) * math.radians(AUG_DEGREES)
    scale = 1 + (torch.rand(n) * 2 - 1) * AUG_SCALE
    shift = (torch.rand(n, 2) * 2 - 1) * (2 * AUG_TRANSLATE)  # grid coordinates span 2
    flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0) if hflip else torch.ones(n)
    cos, sin = angle.cos() / scale, angle.sin() / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], 1),
            torch.stack([sin * flip, cos, shift[:, 1]], 1),
        ],
        1,
    ).to(images)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def train_classifier(
    model: nn.Module,
    data: LabelledImages,
    recipe: TrainRecipe,
    *,
    device: torch.device | str = "cpu",
    progress: Callable[[str], None] | None = None,
    on_step: Callable[[nn.Module, int], Any] | None = None,
    regularizer: Regularizer | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data`` with cross-entropy and ``recipe``.

    ``on_step(model, step)`` runs after every optimizer step (pruning schedules use it);
    ``regularizer(model)`` is added to every batch's loss.
    ``progress`` receives one line per epoch (loss and training accuracy). The model
    is left in eval mode; the caller's global RNG state is left untouched.
    """
    images, labels = load_classification_set(data)
    steps = total_steps(len(labels), recipe)
    if steps == 0 or recipe.epochs == 0:
        return TrainResult(0, 0.0, float("nan"))
    device = torch.device(device)
    images, labels = images.to(device), labels.to(device)
    model.to(device, memory_format=torch.channels_last).train()  # ~1.4x faster convs on CPU
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup = min(recipe.warmup_steps, max(1, steps // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps, warmup))
    batch_size = min(recipe.batch_size, len(labels))
    per_epoch = len(labels) // batch_size
    plan = balancing(recipe, [[y] for y in labels.tolist()], loss_weights=True)
    extra = photometric(recipe.augment)
    epoch = _Epoch()
    final_loss = float("nan")
    start = time.perf_counter()
    step = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(recipe.seed)
        batches = sampled_batches(len(labels), batch_size, steps, recipe.seed, plan.repeat_factors)
        for batch_indices in batches:
            index = torch.tensor(batch_indices, device=device)
            y = labels[index]
            x = random_affine(images[index].float().div_(255), hflip=recipe.hflip)
            if extra is not None:
                x = augment_batch(x, extra)
            if recipe.adversarial is not None:
                seed = attack_seed(recipe.seed, step)
                x = perturb_classification_batch(model, x, y, recipe.adversarial, seed)
            x = x.contiguous(memory_format=torch.channels_last)
            epoch.add(
                *_step(model, x, y, optimizer, params, recipe, regularizer, plan.class_weights)
            )
            scheduler.step()
            step += 1
            if on_step is not None:
                on_step(model, step)
            if step % per_epoch == 0 or step == steps:
                final_loss = epoch.mean_loss
                if progress is not None:
                    elapsed = time.perf_counter() - start
                    number = math.ceil(step / per_epoch)
                    progress(f"epoch {number}/{recipe.epochs} {epoch} ({elapsed:.0f}s)")
                epoch = _Epoch()
    model.to(memory_format=torch.contiguous_format).eval()
    return TrainResult(step, time.perf_counter() - start, final_loss)


def _step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    recipe: TrainRecipe,
    regularizer: Regularizer | None = None,
    class_weights: dict[int, float] | None = None,
) -> tuple[float, int, int]:
    """One optimizer step; returns the loss, the number correct and the batch size."""
    logits = model(x)
    if class_weights is None:
        loss = F.cross_entropy(logits, y)
    else:
        weight = loss_weight_tensor(class_weights, logits.shape[1]).to(logits)
        loss = (weight[y] * F.cross_entropy(logits, y, reduction="none")).mean()
    if regularizer is not None:
        loss = loss + regularizer(model)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {float(loss)}; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(params, recipe.clip_grad_norm)
    optimizer.step()
    correct = int((logits.detach().argmax(1) == y).sum())
    return float(loss.detach()), correct, len(y)


class _Epoch:
    """Running mean loss and accuracy of one epoch's batches."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.correct = 0
        self.seen = 0
        self.steps = 0

    def add(self, loss: float, correct: int, n: int) -> None:
        self.loss += loss
        self.correct += correct
        self.seen += n
        self.steps += 1

    @property
    def mean_loss(self) -> float:
        return self.loss / self.steps if self.steps else float("nan")

    def __str__(self) -> str:
        return f"loss {self.mean_loss:.3f} train acc {self.correct / max(1, self.seen):.3f}"

"""Training and fine-tuning of torchvision detectors on COCO-format data.

One loop serves both the embedded default's training recipe and the ``finetune:``
step of a variant: AdamW, linear warm-up then cosine decay, horizontal-flip (and
optionally naturalistic, ``robustness_harness.train.augment``) augmentation through
``torchvision.transforms.v2``, gradient clipping; optional class-balanced sampling
(``robustness_harness.train.samplers``) and adversarial batches
(``robustness_harness.train.adversarial_finetune``).
All randomness comes from ``seed`` inside a forked RNG, so the same seed gives the same
weights and the caller's global RNG state is left untouched.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from robustness_harness.perturb.attacks import attack_seed
from robustness_harness.train.adversarial_finetune import (
    AdversarialTraining,
    perturb_detection_batch,
)
from robustness_harness.train.augment import AUGMENTS, photometric
from robustness_harness.train.samplers import balancing, sampled_batches, sampler_problem

Regularizer = Callable[[nn.Module], torch.Tensor]
"""An extra loss term computed from the model alone (e.g. an L1 penalty on BN scales)."""


class DetectionData(Protocol):
    """What training needs of a dataset (``robustness_harness.data.CocoDetectionData`` fits)."""

    image_ids: list[int]

    def load_image(self, image_id: int) -> np.ndarray: ...

    def target(self, image_id: int) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class TrainRecipe:
    """Hyper-parameters of one training run (part of the checkpoint's cache key).

    ``sampler``, ``rfs_threshold``, ``beta``, ``lam``: class balancing (see
    ``robustness_harness.train.samplers``); ``augment``: ``none`` or ``naturalistic``;
    ``adversarial``: an ``AdversarialTraining`` (a mapping or method name is converted).
    Inconsistent values raise ``ValueError`` naming the field.
    """

    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 16
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    max_steps: int | None = None
    clip_grad_norm: float = 10.0
    hflip: bool = True
    seed: int = 0
    sampler: str = "uniform"
    rfs_threshold: float | None = None
    beta: float | None = None
    lam: float = 1.0
    augment: str = "none"
    adversarial: AdversarialTraining | None = None

    def __post_init__(self) -> None:
        problem = sampler_problem(self.sampler, self.rfs_threshold, self.beta, self.lam)
        if problem is not None:
            raise ValueError(f"{problem.field}: {problem.message}; {problem.hint}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        object.__setattr__(self, "adversarial", AdversarialTraining.coerce(self.adversarial))


RECIPE_DEFAULTS = TrainRecipe()
"""Every training default in one place: a suite's ``finetune:`` (``FinetuneSpec``) takes
its defaults from here."""


def recipe_from(settings: Any, seed: int) -> TrainRecipe:
    """The recipe of a suite's ``finetune:``: each ``TrainRecipe`` field that ``settings``
    has (by name), the others at their defaults; ``seed`` when its own is None."""
    values = {
        f.name: getattr(settings, f.name)
        for f in dataclasses.fields(TrainRecipe)
        if hasattr(settings, f.name)
    }
    if values.get("seed") is None:
        values["seed"] = seed
    return TrainRecipe(**values)


@dataclass(frozen=True)
class TrainResult:
    """What a training run did: optimizer steps, seconds, last smoothed loss."""

    steps: int
    seconds: float
    final_loss: float


def load_training_set(
    data: DetectionData, image_ids: Sequence[int] | None = None
) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Decode every image once into uint8 CHW tensors with its target (boxes, labels)."""
    ids = list(data.image_ids if image_ids is None else image_ids)
    items = []
    for image_id in ids:
        image = torch.from_numpy(np.ascontiguousarray(data.load_image(image_id))).permute(2, 0, 1)
        target = data.target(image_id)
        items.append((image, {"boxes": target["boxes"], "labels": target["labels"]}))
    return items


def detection_transform(recipe: TrainRecipe) -> v2.Transform:
    """The per-image training transform: optional flip, to float in [0, 1], the
    recipe's photometric augmentation, then boxes that became degenerate are dropped."""
    steps: list[v2.Transform] = []
    if recipe.hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    extra = photometric(recipe.augment)
    if extra is not None:
        steps.append(extra)
    steps.append(v2.SanitizeBoundingBoxes())
    return v2.Compose(steps)


def lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def total_steps(n_images: int, recipe: TrainRecipe) -> int:
    """Optimizer steps the recipe takes on ``n_images`` (drop-last batches)."""
    per_epoch = n_images // min(recipe.batch_size, n_images) if n_images else 0
    steps = per_epoch * recipe.epochs
    return min(steps, recipe.max_steps) if recipe.max_steps is not None else steps


def train_detector(
    model: nn.Module,
    items: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
    recipe: TrainRecipe,
    *,
    device: torch.device | str = "cpu",
    progress: Callable[[str], None] | None = None,
    on_step: Callable[[nn.Module, int], Any] | None = None,
    regularizer: Regularizer | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``items`` (see ``load_training_set``) with ``recipe``.

    ``on_step(model, step)`` runs after every optimizer step (pruning schedules use it);
    ``regularizer(model)`` is added to every batch's loss (slimming, ops budgets).
    ``progress`` receives a line about every 10 % of the steps.
    """
    steps = total_steps(len(items), recipe)
    if steps == 0 or recipe.epochs == 0:
        return TrainResult(0, 0.0, float("nan"))
    device = torch.device(device)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup = min(recipe.warmup_steps, max(1, steps // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps, warmup))
    transform = detection_transform(recipe)
    plan = balancing(recipe, [t["labels"].tolist() for _, t in items], loss_weights=False)
    start = time.perf_counter()
    smoothed = float("nan")
    step = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        batch_size = min(recipe.batch_size, len(items))
        batches = sampled_batches(len(items), batch_size, steps, recipe.seed, plan.repeat_factors)
        for batch_indices in batches:
            batch = [transformed(items[i], transform) for i in batch_indices]
            if recipe.adversarial is not None:
                seed = attack_seed(recipe.seed, step)
                batch = perturb_detection_batch(model, batch, recipe.adversarial, seed)
            value = _step(
                model, batch, optimizer, params, recipe.clip_grad_norm, device, regularizer
            )
            scheduler.step()
            step += 1
            smoothed = value if math.isnan(smoothed) else 0.95 * smoothed + 0.05 * value
            if on_step is not None:
                on_step(model, step)
            if progress is not None and (step % max(1, steps // 10) == 0 or step == steps):
                elapsed = time.perf_counter() - start
                progress(f"step {step}/{steps} loss {smoothed:.3f} ({elapsed:.0f}s)")
    model.eval()
    return TrainResult(step, time.perf_counter() - start, smoothed)


def _step(
    model: nn.Module,
    batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    clip: float,
    device: torch.device,
    regularizer: Regularizer | None = None,
) -> float:
    """One optimizer step on the summed detection losses (+ regularizer); returns the loss."""
    images = [img.to(device) for img, _ in batch]
    targets = [{k: v.to(device) for k, v in t.items()} for _, t in batch]
    loss = sum(model(images, targets).values())
    if regularizer is not None:
        loss = loss + regularizer(model)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {float(loss)}; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    return float(loss.detach())


def transformed(
    item: tuple[torch.Tensor, dict[str, torch.Tensor]], transform: v2.Transform
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One uint8 CHW image and its target through ``transform`` with box-aware types."""
    image, target = item
    boxes = tv_tensors.BoundingBoxes(
        target["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:])
    )
    out_image, out_target = transform(
        tv_tensors.Image(image), {"boxes": boxes, "labels": target["labels"]}
    )
    return out_image.as_subclass(torch.Tensor), {
        "boxes": out_target["boxes"].as_subclass(torch.Tensor),
        "labels": out_target["labels"],
    }

"""L∞ adversarial attacks on images in [0, 1]: classifiers through torchattacks, detectors
through their training losses.

Randomness (PGD's random start, detector proposal sampling) is drawn inside
``seeded_rng``: seeded per batch from ``(seed, batch index)`` and restored afterwards,
so attacks are reproducible and never change the caller's global RNG state.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
import torchattacks
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from robustness_harness.errors import CheckError
from robustness_harness.inference.evaluate import first_line

ClassifierAttack = Literal["pgd", "fgsm"]

_EVAL_DURING_ATTACK = (
    nn.modules.batchnorm._NormBase,
    nn.modules.dropout._DropoutNd,
    GeneralizedRCNNTransform,
)
"""Modules kept in eval mode while a detector computes its losses: norm layers keep
their running statistics, dropout is off, and images are resized as in evaluation."""


# -- parameters and seeding ----------------------------------------------------------------


def validate_attack_params(*, eps: float, alpha: float = 1.0, steps: int = 1) -> None:
    """Raise ``ValueError`` naming the parameter and a valid value when one is out of range."""
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps >= 0):
        raise ValueError(
            f"eps must be a finite number >= 0 (an L∞ radius in [0, 1] pixel units, "
            f"e.g. 8/255), got {eps!r}"
        )
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a step size > 0 (e.g. 2/255), got {alpha!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1 (e.g. 10), got {steps!r}")


def attack_seed(seed: int, batch_index: int) -> int:
    """The RNG seed of one attack batch: a stable 63-bit hash of ``(seed, batch_index)``."""
    digest = hashlib.sha256(f"attack:{int(seed)}:{int(batch_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@contextmanager
def seeded_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Seed torch's CPU generator (and ``device``'s, if CUDA) for the block; restore after.

    Only the forked generators are seeded, so no other CUDA device's state changes and
    no seeding is queued for a CUDA context that is not yet initialised.
    """
    device = torch.device(device)
    cuda = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def module_device(module: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    """The device of ``module``'s first parameter or buffer (``default`` if it has none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device(default)


@contextmanager
def modes_restored(model: nn.Module) -> Iterator[None]:
    """Restore every module's ``training`` flag on exit, also after an exception."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


# -- classifiers -----------------------------------------------------------------------------


def attack_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    method: ClassifierAttack = "pgd",
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    steps: int = 10,
    random_start: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """Adversarial images (B, C, H, W) in [0, 1] by ``torchattacks.PGD`` or ``FGSM``.

    ``model`` maps [0, 1] images to logits (normalisation inside). The attack runs
    under ``seeded_rng(seed)`` on the model's device: the result equals
    ``torch.manual_seed(seed); torchattacks.PGD(model, ...)(images, labels)``.
    """
    validate_attack_params(eps=eps, alpha=alpha, steps=steps)
    if method == "pgd":
        attack = torchattacks.PGD(
            model, eps=eps, alpha=alpha, steps=steps, random_start=random_start
        )
    elif method == "fgsm":
        attack = torchattacks.FGSM(model, eps=eps)
    else:
        raise ValueError(f"method must be 'pgd' or 'fgsm', got {method!r}")
    device = module_device(model)
    attack.set_device(device)
    with modes_restored(model), seeded_rng(seed, device), _grad_enabled():
        return attack(images.to(device), labels.to(device))


# -- detectors -------------------------------------------------------------------------------


@contextmanager
def loss_mode(model: nn.Module) -> Iterator[None]:
    """Training mode (the detector returns its loss dict) with norm layers, dropout and
    the input transform in eval mode; every module's flag is restored on exit."""
    with modes_restored(model):
        model.train()
        for module in model.modules():
            if isinstance(module, _EVAL_DURING_ATTACK):
                module.eval()
        yield


def detection_loss(
    model: nn.Module, images: Sequence[torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]]
) -> torch.Tensor:
    """The sum of a torchvision detector's training losses (call inside ``loss_mode``);
    ``CheckError`` when the detector raises ``TypeError`` or returns no loss dict."""
    name = type(model).__name__
    try:
        losses = model(list(images), [dict(t) for t in targets])
    except TypeError as err:
        why = f"{name}.forward(images, targets) raised TypeError: {first_line(err)}"
        raise _no_losses(why) from None
    if not isinstance(losses, Mapping) or not losses:
        raise _no_losses(f"{name} returned {type(losses).__name__} in training mode")
    return torch.stack([v.sum() for v in losses.values()]).sum()


def _no_losses(what: str) -> CheckError:
    """The one-line error of an attack on a detector without training losses."""
    return CheckError(
        "pgd_map needs a torchvision-style detector whose train-mode forward(images, "
        f"targets) returns a loss dict; {what}",
        field="metric",
        hint="drop the check for this model via `apply:` (list only the variants it "
        "gates) or remove it from the suite",
    )


def attack_detector(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    targets: Sequence[Mapping[str, torch.Tensor]],
    *,
    eps: float = 2 / 255,
    alpha: float = 0.5 / 255,
    steps: int = 10,
    random_start: bool = True,
    seed: int = 0,
) -> list[torch.Tensor]:
    """L∞ PGD on CHW images in [0, 1] maximising the sum of ``model``'s training losses.

    ``targets`` are torchvision targets (``boxes`` xyxy, ``labels``) per image. Images
    without ground truth boxes are returned unperturbed. Norm layers and dropout stay
    in eval mode, so no running statistic changes; parameters get no gradients.
    """
    validate_attack_params(eps=eps, alpha=alpha, steps=steps)
    device = module_device(model)
    clean = [img.detach().to(device, torch.float32) for img in images]
    out = list(clean)
    which = [i for i, t in enumerate(targets) if len(t["boxes"]) > 0]
    if not which or eps == 0:
        return out
    gt = [{k: v.to(device) for k, v in targets[i].items()} for i in which]
    with loss_mode(model), seeded_rng(seed, device), _grad_enabled():
        adv = _pgd_steps(model, [clean[i] for i in which], gt, eps, alpha, steps, random_start)
    for i, image in zip(which, adv, strict=True):
        out[i] = image
    return out


def _pgd_steps(
    model: nn.Module,
    clean: list[torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool,
) -> list[torch.Tensor]:
    """torchattacks' PGD update (sign step, project to the ε-ball and [0, 1]) on a list."""
    adv = [img.clone() for img in clean]
    if random_start:
        adv = [(a + torch.empty_like(a).uniform_(-eps, eps)).clamp(0, 1) for a in adv]
    for _ in range(steps):
        adv = [a.detach().requires_grad_(True) for a in adv]
        grads = torch.autograd.grad(detection_loss(model, adv, targets), adv)
        adv = [
            _project(a.detach() + alpha * g.sign(), c, eps)
            for a, g, c in zip(adv, grads, clean, strict=True)
        ]
    return [a.detach() for a in adv]


def _project(adv: torch.Tensor, clean: torch.Tensor, eps: float) -> torch.Tensor:
    return (clean + (adv - clean).clamp(-eps, eps)).clamp(0, 1)


@contextmanager
def _grad_enabled() -> Iterator[None]:
    """Autograd on, also when called under ``no_grad`` or ``inference_mode``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield

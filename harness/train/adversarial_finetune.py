"""Adversarial fine-tuning: every training batch is replaced by its adversarial version.

- ``fgsm``: fast adversarial training (Wong, Rice & Kolter 2020): a uniform random
  start in the ε-ball, one signed-gradient step of size ``alpha`` (default 1.25 ε, as
  in the paper), projection back to the ε-ball and [0, 1] — torchattacks' ``FFGSM``
  update, i.e. ``PGD`` with one step and a random start.
- ``pgd``: ``steps`` projected signed-gradient steps from a random start (Madry et al.;
  default ``alpha`` ε/4, 10 steps).

The perturbations come from ``robustness_harness.perturb.attacks``: torchattacks PGD on
the cross-entropy for classifiers, and the same L∞ PGD on the sum of the detector's
training losses that ``pgd_map`` evaluates with. Each batch's random start is seeded from
``(recipe seed, step)``; the attack never changes a parameter or a running statistic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustness_harness.perturb.attacks import (
    attack_classifier,
    attack_detector,
    validate_attack_params,
)

ADVERSARIAL_METHODS = ("fgsm", "pgd")

FGSM_ALPHA = 1.25
"""Wong et al.'s FGSM step size, in units of ε."""
PGD_ALPHA = 0.25
"""Default PGD step size, in units of ε."""
PGD_STEPS = 10


@dataclass(frozen=True)
class AdversarialTraining:
    """How to perturb training batches (hashable; part of ``TrainRecipe``).

    ``alpha`` and ``steps`` left as None take the method's defaults (see module).
    Invalid values raise ``ValueError`` naming the field and a valid value.
    """

    method: str = "fgsm"
    eps: float = 2 / 255
    alpha: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.method not in ADVERSARIAL_METHODS:
            raise ValueError(
                f"adversarial method must be one of {', '.join(ADVERSARIAL_METHODS)}, "
                f"got {self.method!r}"
            )
        if not (isinstance(self.eps, int | float) and self.eps > 0):
            raise ValueError(
                f"eps must be > 0 for adversarial training (e.g. 2/255), got {self.eps!r}"
            )
        fgsm = self.method == "fgsm"
        if self.alpha is None:
            object.__setattr__(self, "alpha", (FGSM_ALPHA if fgsm else PGD_ALPHA) * self.eps)
        if self.steps is None:
            object.__setattr__(self, "steps", 1 if fgsm else PGD_STEPS)
        if fgsm and self.steps != 1:
            raise ValueError(
                f"fgsm takes one step, got steps={self.steps}; use method 'pgd' for more"
            )
        validate_attack_params(eps=self.eps, alpha=self.alpha, steps=self.steps)

    @classmethod
    def coerce(cls, value: Any) -> AdversarialTraining | None:
        """None, an ``AdversarialTraining``, a mapping of its fields, a method name, or a
        pydantic model with those fields (``FinetuneSpec.adversarial``)."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(method=value)
        if hasattr(value, "model_dump"):
            value = value.model_dump()
        if isinstance(value, Mapping):
            return cls(**value)
        raise TypeError(
            f"adversarial must be an AdversarialTraining, a mapping or a method name, "
            f"got {type(value).__name__}"
        )


def perturb_classification_batch(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: AdversarialTraining,
    seed: int,
) -> torch.Tensor:
    """Adversarial versions of float ``(N, C, H, W)`` images in [0, 1] for ``model``."""
    assert spec.alpha is not None and spec.steps is not None
    return attack_classifier(
        model,
        images,
        labels,
        method="pgd",
        eps=spec.eps,
        alpha=spec.alpha,
        steps=spec.steps,
        random_start=True,
        seed=seed,
    )


def perturb_detection_batch(
    model: nn.Module,
    batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
    spec: AdversarialTraining,
    seed: int,
) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """The batch with each float CHW image in [0, 1] replaced by its adversarial
    version against the detector's summed training losses (targets unchanged)."""
    assert spec.alpha is not None and spec.steps is not None
    images = attack_detector(
        model,
        [image for image, _ in batch],
        [target for _, target in batch],
        eps=spec.eps,
        alpha=spec.alpha,
        steps=spec.steps,
        random_start=True,
        seed=seed,
    )
    return [(image, target) for image, (_, target) in zip(images, batch, strict=True)]

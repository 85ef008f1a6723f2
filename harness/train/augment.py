"""Training-time augmentations selected by ``finetune: {augment: ...}``.

``naturalistic`` is the recipe of Cygert & Czyżewski (III-C, after Hermann et al.):
colour distortion with probability 0.5 (SimCLR's jitter at strength 1: brightness,
contrast and saturation 0.8, hue 0.2), colour drop (grayscale) 0.2, Gaussian blur 0.5
(σ in [0.1, 2], SimCLR's range) and Gaussian noise 0.5 (σ = 0.08, imagecorruptions'
severity-1 noise), through ``torchvision.transforms.v2`` on float images in [0, 1].
The steps are photometric, so boxes (``tv_tensors.BoundingBoxes``) pass through
unchanged next to any geometric step of the pipeline. Randomness comes from the
global torch RNG: the training loops draw it inside a forked RNG seeded by the recipe.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

AUGMENTS = ("none", "naturalistic")

JITTER = (0.8, 0.8, 0.8, 0.2)
"""ColorJitter brightness, contrast, saturation, hue (SimCLR, strength 1)."""
BLUR_KERNEL = 9
BLUR_SIGMA = (0.1, 2.0)
NOISE_SIGMA = 0.08


def naturalistic() -> v2.Transform:
    """The naturalistic augmentation on one float image in [0, 1] (with its boxes)."""
    return v2.Compose(
        [
            v2.RandomApply([v2.ColorJitter(*JITTER)], p=0.5),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(BLUR_KERNEL, sigma=BLUR_SIGMA)], p=0.5),
            v2.RandomApply([v2.GaussianNoise(sigma=NOISE_SIGMA, clip=True)], p=0.5),
        ]
    )


def photometric(name: str) -> v2.Transform | None:
    """The augmentation called ``name`` (None for ``none``); ``ValueError`` if unknown."""
    if name == "none":
        return None
    if name == "naturalistic":
        return naturalistic()
    raise ValueError(f"unknown augment {name!r}; use one of {', '.join(AUGMENTS)}")


def augment_batch(images: torch.Tensor, transform: v2.Transform) -> torch.Tensor:
    """``transform`` applied to each float ``(N, C, H, W)`` image with its own draws."""
    return torch.stack([transform(image) for image in images])

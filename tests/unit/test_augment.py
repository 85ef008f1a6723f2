"""Naturalistic augmentation: the paper's probabilities, box-consistent, seeded."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from robustness_harness.train.augment import augment_batch, naturalistic, photometric
from robustness_harness.train.finetune import TrainRecipe, detection_transform, transformed

BOX = [10.0, 6.0, 22.0, 30.0]  # x1, y1, x2, y2 on a 40 x 48 (H x W) canvas


def _scene() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A dark uint8 image with a bright, coloured rectangle exactly inside BOX."""
    image = torch.full((3, 40, 48), 20, dtype=torch.uint8)
    x1, y1, x2, y2 = (int(v) for v in BOX)
    image[:, y1:y2, x1:x2] = torch.tensor([230, 180, 120], dtype=torch.uint8)[:, None, None]
    return image, {"boxes": torch.tensor([BOX]), "labels": torch.tensor([3])}


def _run(transform: v2.Transform, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    return transformed(_scene(), transform)


def test_the_papers_recipe() -> None:
    steps = naturalistic().transforms
    kinds = [(type(s).__name__, getattr(s, "p", None)) for s in steps]
    assert kinds == [
        ("RandomApply", 0.5),
        ("RandomGrayscale", 0.2),
        ("RandomApply", 0.5),
        ("RandomApply", 0.5),
    ]
    inner = [type(s.transforms[0]).__name__ for s in steps if isinstance(s, v2.RandomApply)]
    assert inner == ["ColorJitter", "GaussianBlur", "GaussianNoise"]


def test_boxes_follow_the_object_through_flip_and_naturalistic_augmentation() -> None:
    transform = detection_transform(TrainRecipe(hflip=True, augment="naturalistic"))
    flipped = [48 - BOX[2], BOX[1], 48 - BOX[0], BOX[3]]
    seen_flip = seen_plain = changed = 0
    for seed in range(24):
        image, target = _run(transform, seed)
        assert image.dtype == torch.float32 and image.min() >= 0 and image.max() <= 1
        assert target["labels"].tolist() == [3]
        box = target["boxes"][0].tolist()
        assert box in (BOX, flipped)
        seen_flip += box == flipped
        seen_plain += box == BOX
        x1, y1, x2, y2 = (int(v) for v in box)
        inside = torch.zeros(image.shape[-2:], dtype=torch.bool)
        inside[y1:y2, x1:x2] = True
        gray = image.mean(0)
        assert gray[inside].mean() > gray[~inside].mean() + 0.1, seed
        plain, _ = _run(detection_transform(TrainRecipe(hflip=True)), seed)
        changed += not torch.allclose(image, plain)
    assert seen_flip and seen_plain
    assert changed >= 20  # P(no photometric step) = 0.5 * 0.8 * 0.5 * 0.5 = 0.1


def test_same_seed_same_images_other_seed_differs() -> None:
    transform = detection_transform(TrainRecipe(hflip=False, augment="naturalistic"))
    a, ta = _run(transform, 7)
    b, tb = _run(transform, 7)
    assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
    assert any(not torch.equal(a, _run(transform, s)[0]) for s in range(8, 12))


def test_batch_augmentation_draws_per_image() -> None:
    images = torch.rand(1, 3, 16, 16).expand(6, -1, -1, -1)
    torch.manual_seed(0)
    out = augment_batch(images, naturalistic())
    assert out.shape == images.shape
    assert len({tuple(img.flatten()[:20].tolist()) for img in out}) > 1
    torch.manual_seed(0)
    assert torch.equal(out, augment_batch(images, naturalistic()))


def test_exception_unknown_augment() -> None:
    assert photometric("none") is None
    with pytest.raises(ValueError, match="naturalistic"):
        photometric("natural")
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainRecipe(augment="natural")

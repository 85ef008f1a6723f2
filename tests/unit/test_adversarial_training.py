"""Adversarial fine-tuning: the recipe object, and training really sees ε-perturbed inputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torchattacks
from pydantic import BaseModel
from torch import nn
from torch.nn import functional as F

from robustness_harness.train.adversarial_finetune import (
    AdversarialTraining,
    perturb_classification_batch,
    perturb_detection_batch,
)
from robustness_harness.train.classify import train_classifier
from robustness_harness.train.finetune import TrainRecipe

EPS = 4 / 255


class _Images:
    """A tiny labelled set (``LabelledImages``): class = which half of the image is bright."""

    def __init__(self, n: int = 24) -> None:
        rng = np.random.default_rng(0)
        self.image_ids = list(range(n))
        self._labels = [i % 2 for i in range(n)]
        self._images = []
        for label in self._labels:
            image = rng.integers(40, 90, size=(8, 8, 3), dtype=np.uint8)
            image[:, 4 * label : 4 * label + 4] += 120
            self._images.append(image)

    def load_image(self, image_id: int) -> np.ndarray:
        return self._images[image_id]

    def label(self, image_id: int) -> int:
        return self._labels[image_id]


class _Spy(nn.Module):
    """A tiny classifier that records the inputs of its training-mode forward passes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(4 * 8 * 8, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x.detach().clone())
        return self.head(self.net(x))


def test_recipe_defaults_and_conversion() -> None:
    fgsm = AdversarialTraining(method="fgsm", eps=EPS)
    assert fgsm.alpha == pytest.approx(1.25 * EPS) and fgsm.steps == 1  # Wong et al.
    pgd = AdversarialTraining(method="pgd", eps=EPS)
    assert pgd.alpha == pytest.approx(EPS / 4) and pgd.steps == 10
    assert hash(fgsm) == hash(AdversarialTraining("fgsm", EPS, 1.25 * EPS, 1))

    class Spec(BaseModel):
        method: str
        eps: float
        alpha: float | None = None
        steps: int | None = None

    recipe = TrainRecipe(adversarial=Spec(method="pgd", eps=EPS, steps=3))
    assert recipe.adversarial == AdversarialTraining("pgd", EPS, EPS / 4, 3)
    assert TrainRecipe(adversarial={"method": "fgsm", "eps": EPS}).adversarial == fgsm
    assert TrainRecipe(adversarial="pgd").adversarial == AdversarialTraining("pgd")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "cw"}, "method must be one of fgsm, pgd"),
        ({"method": "fgsm", "steps": 3}, "fgsm takes one step"),
        ({"method": "pgd", "eps": 0.0}, "eps must be > 0"),
        ({"method": "pgd", "eps": float("inf")}, "eps must be a finite number"),
        ({"method": "pgd", "alpha": 0.0}, "alpha must be"),
        ({"method": "pgd", "steps": 0}, "steps must be"),
    ],
)
def test_exception_bad_adversarial_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AdversarialTraining(**kwargs)


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    data = _Images(n)
    x = torch.stack([torch.from_numpy(data.load_image(i)) for i in data.image_ids])
    return x.permute(0, 3, 1, 2).float() / 255, torch.tensor(data._labels)


def test_fgsm_batch_reaches_the_eps_ball_and_raises_the_loss() -> None:
    model = _Spy().eval()
    x, y = _batch()
    adv = perturb_classification_batch(model, x, y, AdversarialTraining("fgsm", EPS), seed=3)
    assert (adv - x).abs().max() == pytest.approx(EPS, abs=1e-6)  # clipped at the ε-ball
    assert adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)


def test_ffgsm_is_one_step_pgd_with_random_start() -> None:
    """Why fgsm runs as torchattacks PGD(steps=1): the same update as FFGSM."""
    model = _Spy().eval()
    x, y = _batch()
    alpha = 1.25 * EPS
    torch.manual_seed(0)
    reference = torchattacks.FFGSM(model, eps=EPS, alpha=alpha)(x, y)
    torch.manual_seed(0)
    torch.randn_like(x)  # FFGSM draws (and discards) a normal sample before its start
    ours = torchattacks.PGD(model, eps=EPS, alpha=alpha, steps=1, random_start=True)(x, y)
    assert torch.equal(reference, ours)


@pytest.mark.slow
def test_classifier_training_sees_inputs_perturbed_by_exactly_eps() -> None:
    data = _Images()
    recipe = TrainRecipe(epochs=1, lr=1e-2, batch_size=8, warmup_steps=1, hflip=False, seed=1)
    plain, adversarial = _Spy(), _Spy()
    train_classifier(plain, data, recipe)
    train_classifier(
        adversarial, data, replace(recipe, adversarial=AdversarialTraining("pgd", EPS, steps=2))
    )
    assert len(plain.seen) == len(adversarial.seen) == 3
    # the attack draws from its own seeded RNG, so both runs augment the same way
    for clean, adv in zip(plain.seen, adversarial.seen, strict=True):
        assert (adv - clean).abs().max() == pytest.approx(EPS, abs=1e-5)
    assert not torch.equal(plain.head.weight, adversarial.head.weight)


@pytest.mark.slow
def test_classifier_adversarial_training_is_seeded() -> None:
    data = _Images()
    recipe = TrainRecipe(
        epochs=1, batch_size=8, warmup_steps=1, hflip=False, adversarial="fgsm", seed=2
    )
    first, second = _Spy(), _Spy()
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    train_classifier(first, data, recipe)
    assert torch.equal(torch.rand(2), expected)  # global RNG untouched
    train_classifier(second, data, recipe)
    assert torch.equal(first.head.weight, second.head.weight)


def test_detection_batch_perturbation(tiny_detection_items) -> None:
    from robustness_harness_models.toydrive import build_toydrive_fcos

    torch.manual_seed(0)
    model = build_toydrive_fcos()
    batch = [(img.float() / 255, t) for img, t in tiny_detection_items[:1]]
    spec = AdversarialTraining("fgsm", EPS)
    adv = perturb_detection_batch(model, batch, spec, seed=0)
    again = perturb_detection_batch(model, batch, spec, seed=0)
    for (a, target), (clean, clean_target), (b, _) in zip(adv, batch, again, strict=True):
        assert target is clean_target
        assert (a - clean).abs().max() == pytest.approx(EPS, abs=1e-5)
        assert torch.equal(a, b)
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def tiny_detection_items(tmp_path_factory: pytest.TempPathFactory):
    from robustness_harness.data.builtin import toydrive_dataset
    from robustness_harness.train.finetune import load_training_set

    data = toydrive_dataset(tmp_path_factory.mktemp("td"), n_train=4, n_val=1)
    return [it for it in load_training_set(data["train"]) if len(it[1]["boxes"])]

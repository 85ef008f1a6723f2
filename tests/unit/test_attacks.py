"""Adversarial metrics: equal to torchattacks run by hand, seeded, RNG-safe, validated;
pgd_map on the shipped toydrive detector drops with eps and leaves the model as it was."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torchattacks
from safetensors.torch import load_file
from torch import nn

from robustness_harness.data.builtin import toydrive_dataset
from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.metrics.adversarial import (
    TWIN_NOTE,
    fgsm_accuracy,
    pgd_accuracy,
    pgd_map,
)
from robustness_harness.metrics.context import ModelContext
from robustness_harness.perturb.attacks import attack_detector, attack_seed, loss_mode, seeded_rng
from robustness_harness_models.toydrive import build_toydrive_fcos, verified_shipped_weights

EPS = 4 / 255


class TinyCNN(nn.Module):
    """[0, 1] images → logits, with its normalisation inside."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - self.mean) / 0.25))


@dataclass
class FakeClassData:
    """The part of ``ClassificationData`` the attacks use."""

    pixels: np.ndarray  # (N, H, W, 3) uint8
    classes: np.ndarray  # (N,) int64
    num_classes: int = 4

    @property
    def image_ids(self) -> list[int]:
        return list(range(1, len(self.pixels) + 1))

    def load_image(self, image_id: int) -> np.ndarray:
        return self.pixels[image_id - 1].copy()

    def labels(self, image_ids: list[int]) -> np.ndarray:
        return np.array([self.classes[i - 1] for i in image_ids], dtype=np.int64)


@pytest.fixture(scope="module")
def classifier() -> TinyCNN:
    torch.manual_seed(3)
    model = TinyCNN()
    with torch.no_grad():  # non-trivial running statistics, confident logits
        model.features[1].running_mean.uniform_(-0.2, 0.2)
        model.features[1].running_var.uniform_(0.5, 1.5)
        model.head[2].weight.mul_(4)
    return model.eval()


@pytest.fixture(scope="module")
def class_data(classifier: TinyCNN) -> FakeClassData:
    """20 noisy plain-colour images labelled with the model's clean predictions (accuracy 1)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (20, 1, 1, 3))
    pixels = np.clip(base + rng.integers(-40, 41, (20, 16, 16, 3)), 0, 255).astype(np.uint8)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        classes = classifier(x).argmax(1).numpy().astype(np.int64)
    assert len(set(classes.tolist())) == 4  # every class occurs
    return FakeClassData(pixels, classes)


def _ctx(model: nn.Module, data: object, **kw: object) -> ModelContext:
    return ModelContext(model=model, data=data, device=torch.device("cpu"), task="x", **kw)


def _by_hand(
    attacked: nn.Module,
    evaluated: nn.Module,
    data: FakeClassData,
    make: type,
    batch_size: int,
    seed: int,
    **params: object,
) -> float:
    """torchattacks used the ordinary way: global seed per batch, then the attack."""
    attack = make(attacked, **params)
    correct = 0
    ids = data.image_ids
    for index, first in enumerate(range(0, len(ids), batch_size)):
        chunk = ids[first : first + batch_size]
        x = torch.from_numpy(np.stack([data.load_image(i) for i in chunk])).permute(0, 3, 1, 2)
        x = x.float() / 255
        y = torch.from_numpy(data.labels(chunk))
        torch.manual_seed(attack_seed(seed, index))
        adv = attack(x, y)
        with torch.no_grad():
            correct += int((evaluated(adv).argmax(1) == y).sum())
    return correct / len(ids)


def test_pgd_accuracy_equals_torchattacks(classifier: TinyCNN, class_data: FakeClassData) -> None:
    params = {"eps": EPS, "alpha": 1 / 255, "steps": 5, "random_start": True}
    result = pgd_accuracy(_ctx(classifier, class_data, seed=3), batch_size=8, **params)
    state = torch.get_rng_state()
    expected = _by_hand(classifier, classifier, class_data, torchattacks.PGD, 8, 3, **params)
    torch.set_rng_state(state)
    assert result.value == expected
    assert result.details == {"clean_accuracy": 1.0, "eps": EPS, "steps": 5, "n": 20}
    assert result.value < 1.0 and result.note == ""


def test_fgsm_accuracy_equals_torchattacks(classifier: TinyCNN, class_data: FakeClassData) -> None:
    result = fgsm_accuracy(_ctx(classifier, class_data), eps=EPS, batch_size=7)
    expected = _by_hand(classifier, classifier, class_data, torchattacks.FGSM, 7, 0, eps=EPS)
    assert result.value == expected < 1.0
    assert result.details["steps"] == 1 and result.details["clean_accuracy"] == 1.0


def test_attack_images_equal_torchattacks_bitwise(classifier: TinyCNN) -> None:
    from robustness_harness.perturb.attacks import attack_classifier

    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ours = attack_classifier(classifier, x, y, eps=EPS, alpha=1 / 255, steps=3, seed=11)
    torch.manual_seed(11)
    theirs = torchattacks.PGD(classifier, eps=EPS, alpha=1 / 255, steps=3)(x, y)
    assert torch.equal(ours, theirs)
    again = attack_classifier(classifier, x, y, eps=EPS, alpha=1 / 255, steps=3, seed=12)
    assert not torch.equal(ours, again)  # the seed drives the random start
    assert (ours - x).abs().max() <= EPS + 1e-6


def test_eps_zero_gives_clean_accuracy(classifier: TinyCNN, class_data: FakeClassData) -> None:
    for fn in (pgd_accuracy, fgsm_accuracy):
        ctx = _ctx(classifier, class_data)
        ctx.data = FakeClassData(class_data.pixels[:12], class_data.classes[:12])
        result = fn(ctx, eps=0.0)
        assert result.value == result.details["clean_accuracy"] == 1.0
        assert result.details["n"] == 12


def test_seeded_and_global_rng_untouched(classifier: TinyCNN, class_data: FakeClassData) -> None:
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    ctx = _ctx(classifier, class_data, seed=5)
    first = pgd_accuracy(ctx, eps=2 / 255, steps=2, batch_size=5)
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(100)  # a different global state must not change the result
    assert pgd_accuracy(ctx, eps=2 / 255, steps=2, batch_size=5) == first


def test_attack_leaves_model_unchanged(classifier: TinyCNN, class_data: FakeClassData) -> None:
    state = copy.deepcopy(classifier.state_dict())
    classifier.head[1].train()  # a mixed state must survive as it is
    try:
        pgd_accuracy(_ctx(classifier, class_data), eps=EPS, steps=2)
        assert classifier.head[1].training and not classifier.training
    finally:
        classifier.head[1].eval()
    for key, value in classifier.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in classifier.parameters())


def test_twin_crafts_and_model_is_evaluated(classifier: TinyCNN, class_data: FakeClassData) -> None:
    evaluated = copy.deepcopy(classifier)
    with torch.no_grad():
        evaluated.head[2].bias.add_(0.05)
    ctx = _ctx(evaluated, class_data, twin=classifier)
    result = pgd_accuracy(ctx, eps=EPS, steps=3, batch_size=10)
    expected = _by_hand(
        classifier, evaluated, class_data, torchattacks.PGD, 10, 0, eps=EPS, alpha=2 / 255, steps=3
    )
    assert result.value == expected
    assert result.note == TWIN_NOTE


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"eps": -0.1}, r"eps must be a finite number >= 0 .*8/255.*-0\.1"),
        ({"eps": float("nan")}, "eps must be a finite number"),
        ({"alpha": 0.0}, r"alpha must be a step size > 0 \(e\.g\. 2/255\), got 0\.0"),
        ({"steps": 0}, r"steps must be an integer >= 1 \(e\.g\. 10\), got 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ],
)
def test_validation_names_the_parameter(
    classifier: TinyCNN, class_data: FakeClassData, params: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        pgd_accuracy(_ctx(classifier, class_data), **params)


def test_seeded_rng_restores_state() -> None:
    torch.manual_seed(7)
    before = torch.get_rng_state()
    with seeded_rng(99):
        a = torch.rand(3)
    with seeded_rng(99):
        assert torch.equal(torch.rand(3), a)
    assert torch.equal(torch.get_rng_state(), before)
    assert attack_seed(0, 1) != attack_seed(0, 2) != attack_seed(1, 1)
    assert 0 <= attack_seed(2**40, 10**6) < 2**63


# -- detectors -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toydrive_val(shared_data_root: Path) -> CocoDetectionData:
    return toydrive_dataset(shared_data_root)["val"]


@pytest.fixture(scope="module")
def detector() -> nn.Module:
    model = build_toydrive_fcos()
    model.load_state_dict(load_file(verified_shipped_weights()))
    return model.eval()


def test_pgd_map_drops_as_eps_grows(detector: nn.Module, toydrive_val: CocoDetectionData) -> None:
    val16 = toydrive_val.subset(toydrive_val.image_ids[:16])
    ctx = ModelContext(detector, val16, torch.device("cpu"), "detection", seed=0)
    state = {k: v.clone() for k, v in detector.state_dict().items()}
    modes = [m.training for m in detector.modules()]
    before = torch.get_rng_state()
    values = []
    for eps in (0.0, 1 / 255, 4 / 255):
        result = pgd_map(ctx, eps=eps, alpha=max(eps, 1 / 255) / 2, steps=2)
        assert result.details["n"] == 16 and result.details["eps"] == eps
        values.append(result.value)
    assert values[0] == result.details["clean_map"] > 0.3
    assert values[0] > values[1] > values[2], values
    assert [m.training for m in detector.modules()] == modes
    for key, value in detector.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in detector.parameters())
    assert torch.equal(torch.get_rng_state(), before)


class EvalOnly(nn.Module):
    """A stand-in for a quantized detector: inference only, records its batches."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.calls += 1
        return self.inner(images)


def test_pgd_map_attacks_through_the_twin(
    detector: nn.Module, toydrive_val: CocoDetectionData
) -> None:
    evaluated = EvalOnly(detector).eval()
    val4 = toydrive_val.subset(toydrive_val.image_ids[:4])
    ctx = ModelContext(evaluated, val4, torch.device("cpu"), "detection", twin=detector)
    result = pgd_map(ctx, eps=EPS, alpha=EPS, steps=1)
    assert result.note == TWIN_NOTE and evaluated.calls == 2  # clean + adversarial
    assert result.value < result.details["clean_map"]


def test_detector_attack_skips_images_without_boxes(
    detector: nn.Module, toydrive_val: CocoDetectionData
) -> None:
    image_id = toydrive_val.image_ids[0]
    image = torch.from_numpy(toydrive_val.load_image(image_id)).permute(2, 0, 1).float() / 255
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}
    targets = [toydrive_val.target(image_id), empty]
    adv = attack_detector(detector, [image, image], targets, eps=EPS, alpha=EPS, steps=1)
    assert torch.equal(adv[1], image)
    assert 0 < (adv[0] - image).abs().max() <= EPS + 1e-6


def test_loss_mode_restores_flags_after_an_error(detector: nn.Module) -> None:
    modes = [m.training for m in detector.modules()]
    with pytest.raises(RuntimeError, match="boom"), loss_mode(detector):
        assert detector.training and not detector.backbone.stem[1].training
        assert not detector.transform.training
        raise RuntimeError("boom")
    assert [m.training for m in detector.modules()] == modes

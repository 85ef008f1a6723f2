"""Classifier training, the toysigns CNN and the torchvision classifier wrappers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.data.toysigns import TOYSIGNS_CLASSES, generate_toysigns
from robustness_harness.errors import DataError
from robustness_harness.store.cache import Cache
from robustness_harness.train.classify import (
    load_classification_set,
    random_affine,
    train_classifier,
)
from robustness_harness.train.finetune import TrainRecipe
from robustness_harness.user_code import PretrainContext
from robustness_harness_models.torchvision_classifiers import (
    MOBILENET_V3_SMALL,
    RESNET18,
    mobilenet_v3_small,
    resnet18,
)
from robustness_harness_models.toysigns import TOYSIGNS_CNN, build_toysigns_cnn

RECIPE = TrainRecipe(epochs=6, lr=5e-3, batch_size=32, warmup_steps=5, hflip=False, seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> ClassificationData:
    paths = generate_toysigns(tmp_path_factory.mktemp("signs") / "d", n_train=192, n_val=0)
    return ClassificationData.load(paths["images"], paths["train"])


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_toysigns_cnn(widths=(8, 16, 32))


def _mean_loss(model: nn.Module, data: ClassificationData) -> float:
    images, labels = load_classification_set(data)
    with torch.no_grad():
        return float(F.cross_entropy(model.eval()(images.float() / 255), labels))


def test_load_classification_set(data: ClassificationData) -> None:
    images, labels = load_classification_set(data, data.image_ids[:5])
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == data.labels(data.image_ids[:5]).tolist()


@pytest.mark.slow
def test_training_lowers_the_loss(data: ClassificationData) -> None:
    model = _tiny()
    before = _mean_loss(model, data)
    lines: list[str] = []
    steps: list[int] = []
    result = train_classifier(
        model, data, RECIPE, progress=lines.append, on_step=lambda m, s: steps.append(s)
    )
    assert result.steps == 6 * (192 // 32) and steps == list(range(1, result.steps + 1))
    assert len(lines) == 6 and lines[-1].startswith("epoch 6/6 loss")
    assert not model.training
    after = _mean_loss(model, data)
    assert after < 0.8 * before


@pytest.mark.slow
def test_same_seed_same_weights_rng_untouched(data: ClassificationData) -> None:
    recipe = TrainRecipe(epochs=1, batch_size=32, max_steps=3, hflip=True, seed=5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first, second, other = _tiny(), _tiny(), _tiny()
    torch.set_rng_state(state)
    train_classifier(first, data, recipe)
    assert torch.equal(torch.get_rng_state(), state)
    train_classifier(second, data, recipe)
    train_classifier(other, data, TrainRecipe(epochs=1, batch_size=32, max_steps=3, seed=6))
    a, b, c = (m.state_dict() for m in (first, second, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_random_affine_keeps_flat_images_and_shapes() -> None:
    flat = torch.full((4, 3, 32, 32), 0.25)
    torch.manual_seed(0)
    out = random_affine(flat, hflip=True)
    assert out.shape == flat.shape and torch.allclose(out, flat)
    ramp = torch.linspace(0, 1, 32).expand(2, 3, 32, 32).contiguous()
    assert not torch.allclose(random_affine(ramp), ramp)


def test_toysigns_cnn_takes_unit_images() -> None:
    model = build_toysigns_cnn().eval()
    assert TOYSIGNS_CNN.task == "classification" and TOYSIGNS_CNN.build is build_toysigns_cnn
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, len(TOYSIGNS_CLASSES))
    assert not any(k.startswith("0.") for k in model.state_dict())  # Normalize: no state


@pytest.mark.slow
def test_pretrained_trains_once_and_caches(data: ClassificationData, tmp_path: Path) -> None:
    lines: list[str] = []
    ctx = PretrainContext(
        cache=Cache(tmp_path / "cache"),
        data_name="toysigns",
        data_params={},
        train_data=lambda: data,
        device="cpu",
        progress=lines.append,
        model_kwargs={"widths": (8, 16, 32)},
    )
    assert TOYSIGNS_CNN.pretrained is not None
    weights = TOYSIGNS_CNN.pretrained(ctx)
    trained = len(lines)
    assert trained > 1 and lines[0].startswith("training toysigns-cnn on 192 images")
    assert TOYSIGNS_CNN.pretrained(ctx) == weights and len(lines) == trained
    model = build_toysigns_cnn(widths=(8, 16, 32))
    model.load_state_dict(load_file(str(weights)))


@pytest.mark.parametrize(
    ("build", "plain"),
    [
        (resnet18, torchvision.models.resnet18),
        (mobilenet_v3_small, torchvision.models.mobilenet_v3_small),
    ],
)
def test_torchvision_wrappers(
    build: Callable[..., nn.Module], plain: Callable[..., nn.Module]
) -> None:
    torch.manual_seed(0)
    model = build(num_classes=7).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 7)
    keys = list(model.state_dict())
    assert all(k.startswith("net.") for k in keys)
    reference = plain(weights=None, num_classes=7).state_dict()
    assert keys == [f"net.{k}" for k in reference]
    model.load_state_dict(reference)  # plain torchvision keys load too
    assert all(torch.equal(model.state_dict()[f"net.{k}"], v) for k, v in reference.items())


def test_torchvision_entries() -> None:
    for entry in (RESNET18, MOBILENET_V3_SMALL):
        assert entry.task == "classification" and entry.pretrained is None


def test_images_of_different_sizes_are_an_error(data: ClassificationData) -> None:
    class Mixed:
        image_ids = data.image_ids[:2]
        label = staticmethod(data.label)

        @staticmethod
        def load_image(image_id: int) -> np.ndarray:
            image = data.load_image(image_id)
            return image if image_id == data.image_ids[0] else image[:16]

    with pytest.raises(DataError, match="needs images of one size"):
        load_classification_set(Mixed())


def test_class_weighted_cross_entropy_is_the_papers_eq4() -> None:
    from robustness_harness.train.classify import _step

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.rand(5, 3, 2, 2), torch.tensor([0, 1, 2, 2, 1])
    weights = {0: 2.0, 2: 0.5}  # class 1 has no weight: 1
    with torch.no_grad():
        per_image = F.cross_entropy(model(x), y, reduction="none")
    expected = float((torch.tensor([2.0, 1.0, 0.5])[y] * per_image).mean())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    params = list(model.parameters())
    loss, _, n = _step(model, x, y, optimizer, params, RECIPE, None, weights)
    assert loss == pytest.approx(expected) and n == 5
    unweighted, _, _ = _step(model, x, y, optimizer, params, RECIPE, None, None)
    assert unweighted == pytest.approx(float(per_image.mean()))


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"sampler": "rfs", "rfs_threshold": 1.0},
        {"sampler": "ens", "beta": 0.99, "lam": 2.0},
        {"augment": "naturalistic"},
    ],
    ids=["rfs", "ens", "naturalistic"],
)
def test_finetune_options_are_seeded_and_change_training(
    data: ClassificationData, options: dict
) -> None:
    recipe = TrainRecipe(epochs=1, batch_size=32, max_steps=2, seed=3)
    first, second, plain = _tiny(), _tiny(), _tiny()
    train_classifier(first, data, replace(recipe, **options))
    train_classifier(second, data, replace(recipe, **options))
    train_classifier(plain, data, recipe)
    a, b, c = (m.state_dict() for m in (first, second, plain))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)

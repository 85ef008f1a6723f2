"""Shared pieces of the pruning-recipe tests: a tiny toysigns CNN, real training, round trips."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from robustness_harness.compress import CompressContext, finalize_pruning
from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.data.toysigns import generate_toysigns
from robustness_harness.store.checkpoint import load_checkpoint, save_checkpoint
from robustness_harness.train.classify import load_classification_set, train_classifier
from robustness_harness.train.finetune import TrainRecipe
from robustness_harness_models.toysigns import build_toysigns_cnn

RECIPE = TrainRecipe(epochs=1000, lr=5e-3, batch_size=32, warmup_steps=5, hflip=False, seed=0)


def signs(root: Path) -> ClassificationData:
    """A small toysigns training set (32×32 images)."""
    paths = generate_toysigns(root, n_train=128, n_val=0)
    return ClassificationData.load(paths["images"], paths["train"])


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread during the test (recipes compare counts, not speed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def signs_data(tmp_path_factory: pytest.TempPathFactory) -> ClassificationData:
    """A small toysigns training set, generated once per test module."""
    return signs(tmp_path_factory.mktemp("signs") / "d")


def cnn(widths: tuple[int, ...] = (8, 16, 32), seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_toysigns_cnn(widths=widths)


def images(data: ClassificationData, n: int = 8) -> torch.Tensor:
    return load_classification_set(data, data.image_ids[:n])[0].float() / 255


class Trainer:
    """``ctx.train`` for the tests: ``train_classifier`` for ``steps`` steps; records calls."""

    def __init__(self, data: ClassificationData) -> None:
        self.data = data
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, model: nn.Module, steps: int, regularizer: Callable | None = None, **overrides: Any
    ) -> None:
        self.calls.append({"steps": steps, "regularizer": regularizer, **overrides})
        seed = RECIPE.seed + len(self.calls)
        recipe = dataclasses.replace(RECIPE, max_steps=steps, seed=seed, **overrides)
        train_classifier(model, self.data, recipe, regularizer=regularizer)


def context(data: ClassificationData, lines: list[str] | None = None) -> CompressContext:
    sink = lines.append if lines is not None else (lambda _line: None)
    return CompressContext(example_inputs=images(data), progress=sink, train=Trainer(data))


def assert_round_trip(
    model: nn.Module, build: Callable[[], nn.Module], x: Any, tmp_path: Path
) -> nn.Module:
    """Finalize (in place), save and load ``model``; the loaded copy gives identical outputs."""
    model = finalize_pruning(model).eval()
    save_checkpoint(model, tmp_path / "ckpt", meta={})
    loaded = load_checkpoint(build, tmp_path / "ckpt").eval()
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    if isinstance(expected, list):  # detections
        for a, b in zip(expected, got, strict=True):
            assert all(torch.equal(a[k], b[k]) for k in a)
    else:
        assert torch.equal(expected, got)
    return loaded

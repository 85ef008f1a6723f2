"""The embedded default classifier: a small CNN for 32x32 toysigns images.

It takes float images in [0, 1]; normalisation is its first module. Weights are not
shipped: ``pretrained_toysigns_cnn`` trains once (about a minute on two CPU cores) and
caches them, keyed by the training data's fingerprint, the recipe and the versions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.data.toysigns import GENERATOR_VERSION, TOYSIGNS_CLASSES
from robustness_harness.inference.evaluate import predict_classes
from robustness_harness.store.cache import cache_key
from robustness_harness.store.checkpoint import plain_state_dict
from robustness_harness.store.versions import stamps
from robustness_harness.train.classify import train_classifier
from robustness_harness.train.finetune import TrainRecipe
from robustness_harness.user_code import ModelEntry, PretrainContext
from robustness_harness_models.torchvision_classifiers import Normalize

#: Bump when the architecture or the training code changes the trained weights.
MODEL_VERSION = "1"

#: The training recipe of ``toysigns-cnn`` (no flips: arrows and digits are not symmetric).
RECIPE = TrainRecipe(
    epochs=8, lr=3e-3, batch_size=64, weight_decay=5e-4, warmup_steps=100, hflip=False, seed=0
)


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def build_toysigns_cnn(
    num_classes: int = len(TOYSIGNS_CLASSES), *, widths: tuple[int, ...] = (32, 64, 128)
) -> nn.Sequential:
    """Normalize, then one conv-BN-ReLU per stage (``widths``, 2x2 max-pool between
    them), global average pool and a linear classifier (``num_classes`` logits)."""
    layers: list[nn.Module] = [Normalize((0.45, 0.45, 0.45), (0.25, 0.25, 0.25))]
    cin = 3
    for i, width in enumerate(widths):
        if i:
            layers.append(nn.MaxPool2d(2))
        layers.append(_conv_bn(cin, width))
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def train_toysigns_cnn(
    train_data: ClassificationData,
    out_dir: Path,
    *,
    model_kwargs: dict[str, Any] | None = None,
    progress: Callable[[str], None] = print,
    device: str = "cpu",
    recipe: TrainRecipe = RECIPE,
) -> dict[str, Any]:
    """Train ``toysigns-cnn`` with ``recipe`` (its seed also draws the initial weights);
    write ``model.safetensors`` into ``out_dir``."""
    kwargs = {"num_classes": train_data.num_classes, **(model_kwargs or {})}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = build_toysigns_cnn(**kwargs)
    progress(f"training toysigns-cnn on {len(train_data)} images ({recipe.epochs} epochs)")
    result = train_classifier(model, train_data, recipe, device=device, progress=progress)
    save_file(plain_state_dict(model), str(out_dir / "model.safetensors"))
    return {"recipe": asdict(recipe), "steps": result.steps, "seconds": round(result.seconds, 1)}


def pretrained_toysigns_cnn(ctx: PretrainContext) -> Path:
    """Train once on the suite's training split and cache the weights.

    The key holds the data's fingerprint (its json and image file sizes) and, for
    toysigns, the generator version, since pixels can change while sizes do not.
    """
    data = ctx.train_data()
    key = cache_key(
        "pretrained",
        "toysigns-cnn",
        MODEL_VERSION,
        GENERATOR_VERSION if ctx.data_name == "toysigns" else None,
        asdict(RECIPE),
        data.fingerprint,
        ctx.model_kwargs,
        stamps(),
    )
    entry, _ = ctx.cache.get_or_build(
        "ckpt",
        key,
        lambda tmp: train_toysigns_cnn(
            data, tmp, model_kwargs=ctx.model_kwargs, progress=ctx.progress, device=ctx.device
        ),
    )
    return entry.file("model.safetensors")


TOYSIGNS_CNN = ModelEntry(
    build=build_toysigns_cnn, task="classification", pretrained=pretrained_toysigns_cnn
)


def evaluate_accuracy(model: nn.Module, data: ClassificationData) -> dict[str, Any]:
    """Top-1 accuracy of ``model`` on ``data``, overall and per class name."""
    labels = data.labels()
    correct = predict_classes(model, data).top1 == labels
    per_class = {
        name: round(float(correct[labels == k].mean()), 4)
        for k, name in enumerate(data.class_names)
        if (labels == k).any()
    }
    return {"accuracy": round(float(correct.mean()), 4), "per_class": per_class}


if __name__ == "__main__":
    import argparse
    import tempfile
    import time

    from safetensors.torch import load_file

    from robustness_harness.data.builtin import toysigns_dataset

    parser = argparse.ArgumentParser(description="Train toysigns-cnn and report val accuracy.")
    parser.add_argument("--data-root", type=Path, default=Path(".harness-cache/data"))
    args = parser.parse_args()
    splits = toysigns_dataset(args.data_root)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        info = train_toysigns_cnn(splits["train"], Path(tmp))
        info["wall_seconds"] = round(time.perf_counter() - start, 1)
        trained = build_toysigns_cnn()
        trained.load_state_dict(load_file(str(Path(tmp) / "model.safetensors")))
    val = splits["val"]
    info["val"] = evaluate_accuracy(trained, val)
    info["val_dusk"] = evaluate_accuracy(trained, val.select({"lighting": "dusk"}))["accuracy"]
    print(json.dumps(info, indent=2))

"""Compatibility matrix: torchvision classifiers × compression methods. Each cell builds
the model (``weights=None``, 10 classes), compresses it, saves and reloads the checkpoint
(outputs must be identical) and times dense vs compressed on the CPU.

Run: ``python benchmarks/compat_matrix.py [--rounds 5] [--models NAME ...] [--methods ...]``.

Cells print the nonzero-parameter ratio and the CPU latency ratio (batch 1, 64×64
images, 32×32 for the ViT, 2 threads; dense and compressed alternate ABBA, each round
the fastest of 3 passes, the median over rounds);
a cell the method cannot handle prints ``n/a`` and its one-line ``HarnessError``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn

from robustness_harness.compress import METHODS, CompressContext, finalize_pruning
from robustness_harness.compress.quantize import parameter_counts
from robustness_harness.errors import HarnessError
from robustness_harness.store.checkpoint import load_checkpoint, save_checkpoint

CLASSES = 10
MODELS: dict[str, Callable[[], nn.Module]] = {
    name: partial(getattr(tvm, name), weights=None, num_classes=CLASSES)
    for name in (
        "resnet18",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "efficientnet_b0",
        "regnet_x_400mf",
        "squeezenet1_1",
        "vgg11_bn",
        "densenet121",
        "convnext_tiny",
    )
}
MODELS["vit_tiny"] = partial(
    tvm.VisionTransformer,
    image_size=32,
    patch_size=8,
    num_layers=2,
    num_heads=2,
    hidden_dim=32,
    mlp_dim=64,
    num_classes=CLASSES,
)
#: The smallest input each model takes (the ViT's image_size is fixed).
FIXED_SIZE = {"vit_tiny": 32}
PARAMS: dict[str, dict[str, Any]] = {
    "l1_filter": {"sparsity": 0.3},
    "global_magnitude": {"sparsity": 0.5},
    "slimming": {"sparsity": 0.3, "train_steps": 0},
    "ptq_int8": {"calibration_images": 4},
    "int4_weight": {"calibration_images": 4},
}


@dataclass
class Cell:
    """One compressed model: the dense base, the compressed and the reloaded copy, or
    ``error`` (the method's one-line ``HarnessError``) when the method does not apply."""

    dense: nn.Module
    images: torch.Tensor
    compressed: nn.Module | None = None
    reloaded: nn.Module | None = None
    error: str | None = None


def images_for(name: str, size: int = 64, n: int = 4) -> torch.Tensor:
    """``n`` seeded random images for ``name`` (``size``×``size`` unless it needs its own)."""
    size = FIXED_SIZE.get(name, size)
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def run_cell(name: str, method: str, directory: Path, size: int = 64) -> Cell:
    """Build ``name``, compress it with ``method``, save to and reload from ``directory``."""
    torch.manual_seed(0)
    dense = MODELS[name]().eval()
    images = images_for(name, size)
    cell = Cell(dense, images)
    info = METHODS.get(method)
    ctx = CompressContext(
        example_inputs=images,
        progress=lambda _line: None,
        train=lambda *_a, **_k: None,
        extras={"calibration_images": lambda n: images[:n]},
    )
    try:
        compressed = info.fn(copy.deepcopy(dense), info.params(**PARAMS[method]), ctx)
    except HarnessError as exc:
        cell.error = str(exc)
        return cell
    cell.compressed = finalize_pruning(compressed).eval()
    save_checkpoint(cell.compressed, directory, meta={})
    cell.reloaded = load_checkpoint(lambda: copy.deepcopy(dense), directory).eval()
    return cell


def _seconds(model: nn.Module, image: torch.Tensor, calls: int = 3) -> float:
    """The fastest of ``calls`` forward passes (robust to other processes on the CPU)."""
    best = float("inf")
    with torch.inference_mode():
        for _ in range(calls):
            start = time.perf_counter()
            model(image)
            best = min(best, time.perf_counter() - start)
    return best


def latency_ratio(
    dense: nn.Module, compressed: nn.Module, image: torch.Tensor, rounds: int
) -> float:
    """Median compressed / median dense latency, timed in alternating (ABBA) rounds."""
    models = {"dense": dense, "compressed": compressed}
    times: dict[str, list[float]] = {key: [] for key in models}
    for model in models.values():
        _seconds(model, image)  # warm-up
    for r in range(rounds):
        for key in ("dense", "compressed") if r % 2 == 0 else ("compressed", "dense"):
            times[key].append(_seconds(models[key], image))
    return statistics.median(times["compressed"]) / statistics.median(times["dense"])


def measure(name: str, method: str, rounds: int) -> str:
    """The matrix entry of one cell: ``params× / latency×``, ``n/a`` or ``FAILED``."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cell = run_cell(name, method, Path(tmp))
        except Exception as exc:  # a raw exception is a bug: show it in the matrix
            return f"FAILED ({type(exc).__name__}: {exc})"[:120]
    if cell.error is not None:
        return "n/a"
    assert cell.compressed is not None and cell.reloaded is not None
    with torch.no_grad():
        same = torch.equal(cell.compressed(cell.images), cell.reloaded(cell.images))
    params = parameter_counts(cell.compressed)[1] / parameter_counts(cell.dense)[1]
    latency = latency_ratio(cell.dense, cell.compressed, cell.images[:1], rounds)
    return f"{params:.2f}× / {latency:.2f}×" + ("" if same else " (reload differs)")


def _label(method: str) -> str:
    sparsity = PARAMS[method].get("sparsity")
    return method if sparsity is None else f"{method} {sparsity:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="*", default=list(PARAMS), choices=list(PARAMS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("| model | " + " | ".join(_label(method) for method in args.methods) + " |")
    print("|---" * (len(args.methods) + 1) + "|")
    for name in args.models:
        cells = [measure(name, method, args.rounds) for method in args.methods]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

"""CPU (and GPU) latency of compressed embedded models, as ratios to the dense model.

Run: ``python benchmarks/latency.py [--runs 30] [--models toydrive-fcos toysigns-cnn]``.

Each recipe is applied through the harness's compression registry, without fine-tuning
(latency depends on the architecture and the kernels, not on the weight values; the
detector keeps its shipped trained weights so its post-processing sees realistic
detections). Timing: batch 8 of 128x128 toydrive images for the detector, batch 64 of
32x32 toysigns images for the classifier, 2 threads, warm-up, median of ``--runs``
forwards with all variants interleaved run by run, so load from other processes affects
them alike. On a CUDA machine the float variants are timed with CUDA events as well
(quantized models run on CPU only).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustness_harness.compress import METHODS, CompressContext
from robustness_harness.compress.quantize import parameter_counts
from robustness_harness.metrics.latency import CudaEventTimer, PerfCounterTimer

THREADS = 2

RECIPES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "unstructured-80": [("global_magnitude", {"sparsity": 0.8})],
    "structured-50": [("l1_filter", {"sparsity": 0.5})],
    "slimming-50": [("slimming", {"sparsity": 0.5})],
    "int8": [("ptq_int8", {})],
    "structured-50+int8": [("l1_filter", {"sparsity": 0.5}), ("ptq_int8", {})],
}
"""Variant name → compression steps (registry method name, parameters)."""


def _no_training(model: nn.Module, steps: int, regularizer: Any = None, **overrides: Any) -> None:
    """Stands in for ``ctx.train``: recipes with a training phase keep the dense weights."""


def compress(model: nn.Module, steps: list[tuple[str, dict[str, Any]]], batch: torch.Tensor):
    """``model`` (copied) after each registered compression step in order."""
    model = copy.deepcopy(model)
    ctx = CompressContext(example_inputs=batch, progress=lambda _line: None, train=_no_training)
    for method, params in steps:
        info = METHODS.get(method)
        model = info.fn(model, info.params(**params), ctx)
    return model.eval()


def toydrive_setup() -> tuple[nn.Module, torch.Tensor, Callable[[nn.Module], Callable[[], Any]]]:
    from safetensors.torch import load_file

    from robustness_harness.data.builtin import toydrive_dataset
    from robustness_harness_models.toydrive import (
        WEIGHTS_FILE,
        build_toydrive_fcos,
        verified_shipped_weights,
    )

    model = build_toydrive_fcos()
    if WEIGHTS_FILE.exists():
        model.load_state_dict(load_file(verified_shipped_weights()))
    with tempfile.TemporaryDirectory() as tmp:
        val = toydrive_dataset(Path(tmp), n_train=1, n_val=8)["val"]
        images = [torch.from_numpy(val.load_image(i)).permute(2, 0, 1) for i in val.image_ids]
    batch = torch.stack(images).float() / 255
    return model.eval(), batch, lambda m: lambda: m(list(batch))


def toysigns_setup() -> tuple[nn.Module, torch.Tensor, Callable[[nn.Module], Callable[[], Any]]]:
    from robustness_harness.data.builtin import toysigns_dataset
    from robustness_harness_models.toysigns import build_toysigns_cnn

    with tempfile.TemporaryDirectory() as tmp:
        val = toysigns_dataset(Path(tmp), n_train=1, n_val=64)["val"]
        images = [torch.from_numpy(val.load_image(i)).permute(2, 0, 1) for i in val.image_ids]
    batch = torch.stack(images).float() / 255
    return build_toysigns_cnn().eval(), batch, lambda m: lambda: m(batch)


SETUPS = {"toydrive-fcos": toydrive_setup, "toysigns-cnn": toysigns_setup}


def median_ms(calls: dict[str, Callable[[], object]], timer: Any, runs: int, warmup: int = 5):
    """Median time in ms of each zero-argument call, the calls interleaved run by run."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for i in range(warmup + runs):
            for name, fn in calls.items():
                elapsed = timer(fn)
                if i >= warmup:
                    times[name].append(elapsed)
    return {name: statistics.median(t) for name, t in times.items()}


def bench(name: str, runs: int, recipes: list[str]) -> None:
    torch.manual_seed(0)
    dense, batch, call = SETUPS[name]()
    variants = {"dense": dense}
    for recipe in recipes:
        try:
            variants[recipe] = compress(dense, RECIPES[recipe], batch[:4])
        except Exception as exc:  # report and go on: one broken recipe must not hide the rest
            print(f"{name}/{recipe}: not built ({type(exc).__name__}: {exc})")
    cpu = median_ms({v: call(m) for v, m in variants.items()}, PerfCounterTimer(), runs)
    print(f"\n{name}: batch {len(batch)}, {THREADS} CPU threads, median of {runs}")
    print(f"{'variant':20} {'CPU ms':>9} {'ratio':>7} {'nonzero':>9}")
    for variant, model in variants.items():
        params = parameter_counts(model)[1]
        ratio = cpu[variant] / cpu["dense"]
        print(f"{variant:20} {cpu[variant]:9.2f} {ratio:6.2f}x {params:>9,}")
    if torch.cuda.is_available():
        gpu_models = {v: m for v, m in variants.items() if "int8" not in v}
        batch_gpu = batch.cuda()
        calls = {}
        for variant, model in gpu_models.items():
            model = copy.deepcopy(model).cuda()
            calls[variant] = (
                (lambda m=model: m(list(batch_gpu)))
                if name == "toydrive-fcos"
                else (lambda m=model: m(batch_gpu))
            )
        gpu = median_ms(calls, CudaEventTimer(torch.device("cuda")), runs)
        print(f"GPU ({torch.cuda.get_device_name()}), CUDA events:")
        for variant in gpu_models:
            print(f"{variant:20} {gpu[variant]:9.3f} {gpu[variant] / gpu['dense']:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    for name in args.models:
        bench(name, args.runs, args.recipes)


if __name__ == "__main__":
    main()

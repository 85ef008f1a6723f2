"""Model size: parameters, non-zero parameters, sparsity, bytes on disk and FLOPs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from robustness_harness.metrics.base import MetricResult
from robustness_harness.metrics.context import ModelContext
from robustness_harness.registry import register_metric

Measure = Literal["params", "nonzero_params", "sparsity", "bytes", "flops"]


def checkpoint_bytes(ctx: ModelContext) -> int:
    """Size of ``checkpoint_dir/model.safetensors``; without a checkpoint, the size of the
    safetensors serialisation the checkpoint would have (masks folded in; int tensors,
    scales and zero points for a quantized model)."""
    from robustness_harness.store.checkpoint import (  # checkpoint imports spec
        WEIGHTS_FILE,
        checkpoint_tensors,
    )

    if ctx.checkpoint_dir is None:
        return len(safetensors_bytes(checkpoint_tensors(ctx.model)))
    path = Path(ctx.checkpoint_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"size: the checkpoint has no {WEIGHTS_FILE}: {path}")
    return path.stat().st_size


def one_image_batch(ctx: ModelContext) -> torch.Tensor | list[torch.Tensor]:
    """The first image of ``ctx.data``: ``[CHW]`` for detectors, ``(1, C, H, W)`` otherwise."""
    if not ctx.data.image_ids:
        raise ValueError("size needs at least one image in the evaluation data to count FLOPs")
    images = ctx.images([ctx.data.image_ids[0]])
    if ctx.task == "detection":
        return list(images.unbind(0)) if isinstance(images, torch.Tensor) else images
    return images if isinstance(images, torch.Tensor) else images[0].unsqueeze(0)


def count_flops(model: nn.Module, batch: torch.Tensor | list[torch.Tensor]) -> int:
    """FLOPs of ``model(batch)`` by ``FlopCounterMode`` (2 per multiply-add); for a
    quantized model, of its Conv/Linear layers (``quantized_flops``)."""
    from robustness_harness.compress.quantize import is_quantized, quantized_flops

    if is_quantized(model):
        return quantized_flops(model, batch)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(batch)
    return int(counter.get_total_flops())


def size_measures(ctx: ModelContext) -> dict[str, float | int]:
    """All five measures of ``ctx.model`` (float or quantized)."""
    from robustness_harness.compress.quantize import parameter_counts

    total, nonzero, sparsity = parameter_counts(ctx.model)
    return {
        "params": total,
        "nonzero_params": nonzero,
        "sparsity": sparsity,
        "bytes": checkpoint_bytes(ctx),
        "flops": count_flops(ctx.model, one_image_batch(ctx)),
    }


@register_metric("size", task="any", inputs="model", higher_is_better=False, cacheable=False)
def size(ctx: ModelContext, *, measure: Measure = "nonzero_params") -> MetricResult:
    """Model size by ``measure``: params, nonzero_params, sparsity, bytes or flops.

    ``params`` counts every parameter (pruning masks applied for ``nonzero_params``);
    ``sparsity`` is the fraction of zero Conv/Linear weights; ``bytes`` is the size of
    ``model.safetensors`` on disk; ``flops`` are dense FLOPs of one forward pass on one
    image (``torch.utils.flop_counter``, 2 per multiply-add; matmuls and convolutions
    only, so NMS and other post-processing are not counted). Unstructured zeros are
    still counted as FLOPs: only structured pruning, which removes channels, lowers them.
    For quantized models ``params`` counts the int weights and biases in packed
    parameters, ``bytes`` the int8 (or packed 4-bit) checkpoint, and quantized Conv/Linear
    kernels count their multiply-adds as float ones do.
    """
    if measure not in get_args(Measure):
        raise ValueError(f"measure must be one of {', '.join(get_args(Measure))}, got {measure!r}")
    measures = size_measures(ctx)
    return MetricResult(float(measures[measure]), measures)

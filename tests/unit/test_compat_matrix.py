"""The compatibility matrix (issue 17 part 8): torchvision classifiers × compression
methods build, save, reload to identical outputs and run; a cell a method cannot handle
raises its exact one-line HarnessError. ``benchmarks/compat_matrix.py`` runs every cell
and times it; this test runs the cells below on 32×32 images (the heavy models, vgg11_bn
and densenet121, one cell each, to stay near 90 s on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.compat_matrix import MODELS, run_cell
from robustness_harness.compress.quantize import parameter_counts

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("two_threads")]

HEAVY = ("vgg11_bn", "densenet121")  # tens of seconds a cell on 2 cores: one cell each
WORKS = [
    *((name, "l1_filter") for name in MODELS if name not in HEAVY),
    ("regnet_x_400mf", "global_magnitude"),
    ("vit_tiny", "global_magnitude"),
    ("mobilenet_v3_small", "slimming"),
    ("vgg11_bn", "slimming"),
    ("densenet121", "slimming"),
    ("squeezenet1_1", "ptq_int8"),
    ("vit_tiny", "ptq_int8"),
    ("squeezenet1_1", "int4_weight"),
    ("vit_tiny", "int4_weight"),
]

NOT_APPLICABLE = {
    ("squeezenet1_1", "slimming"): "slimming needs BatchNorm layers, SqueezeNet has none "
    "(fix: use prune: {method: l1_filter, ...} for this model)",
    ("convnext_tiny", "slimming"): "slimming needs BatchNorm layers, ConvNeXt has none "
    "(fix: use prune: {method: l1_filter, ...} for this model)",
    ("vit_tiny", "slimming"): "slimming needs BatchNorm layers, VisionTransformer has none "
    "(fix: use prune: {method: l1_filter, ...} for this model)",
}


@pytest.mark.parametrize(("name", "method"), WORKS)
def test_cell_compresses_round_trips_and_runs(name: str, method: str, tmp_path: Path) -> None:
    cell = run_cell(name, method, tmp_path, size=32)
    assert cell.error is None, cell.error
    assert cell.compressed is not None and cell.reloaded is not None
    with torch.no_grad():
        out = cell.compressed(cell.images)
        torch.testing.assert_close(cell.reloaded(cell.images), out, rtol=0, atol=0)
    assert out.shape == (len(cell.images), 10)
    dense, compressed = parameter_counts(cell.dense)[1], parameter_counts(cell.compressed)[1]
    # l1_filter 30 % of every channel group leaves about 0.5x (0.54x on the ViT)
    bound = {"l1_filter": 0.7, "global_magnitude": 0.9, "slimming": 0.9}.get(method)
    if bound is not None:
        assert compressed < bound * dense, f"{compressed / dense:.2f}x nonzero parameters"


def test_vit_embedding_width_is_pruned_head_by_head(tmp_path: Path) -> None:
    """The residual width (class token, positions, every attention layer) narrows, each
    head by the same channels (torch-pruning's num_heads skipped this group: 0.89x)."""
    cell = run_cell("vit_tiny", "l1_filter", tmp_path, size=32)
    model = cell.compressed
    assert model is not None and model.hidden_dim < 32
    assert model.class_token.shape[-1] == model.hidden_dim
    for attention in (m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)):
        assert attention.embed_dim == model.hidden_dim
        assert attention.head_dim * attention.num_heads == attention.embed_dim


@pytest.mark.parametrize(("name", "method"), sorted(NOT_APPLICABLE))
def test_cell_that_cannot_work_says_why(name: str, method: str, tmp_path: Path) -> None:
    cell = run_cell(name, method, tmp_path, size=32)
    assert cell.error == NOT_APPLICABLE[name, method]
    assert cell.compressed is None

"""A structurally pruned model with PReLU layers saves and reloads to identical outputs
(observed: "shape mismatch prelu1.weight saved [22], model [32]")."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import robustness_harness.compress  # noqa: F401  (registers the methods)
from robustness_harness.compress import METHODS
from robustness_harness.compress.base import CompressContext
from robustness_harness.store.checkpoint import load_checkpoint, save_checkpoint


def _prelu_cnn() -> nn.Module:
    """MTCNN-style: conv → per-channel PReLU, a shared-slope PReLU, norms, linear head."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.PReLU(32),
        nn.Conv2d(32, 16, 3, padding=1),
        nn.PReLU(16),
        nn.GroupNorm(4, 16),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.PReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def test_pruned_prelu_model_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    images = torch.rand(4, 3, 12, 12)
    info = METHODS.get("l1_filter")
    ctx = CompressContext(example_inputs=images, progress=lambda _line: None)
    pruned = info.fn(_prelu_cnn().eval(), info.params(sparsity=0.5), ctx).eval()
    slopes = [m.num_parameters for m in pruned.modules() if isinstance(m, nn.PReLU)]
    assert slopes[0] < 32 and slopes[1] < 16 and slopes[2] == 1  # the structure changed
    save_checkpoint(pruned, tmp_path, meta={})
    loaded = load_checkpoint(_prelu_cnn, tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(images), pruned(images))

"""Structured pruning of small user CNNs with grouped/depthwise convs, LayerNorm, GroupNorm
and PReLU, and the round trip of their checkpoints (observed: a depthwise conv followed by
``nn.LayerNorm([C, H, W])`` made torch-pruning raise a raw IndexError inside l1_filter)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from robustness_harness.compress import METHODS, CompressContext, finalize_pruning
from robustness_harness.compress.prune import count_parameters
from robustness_harness.errors import HarnessError
from robustness_harness.store.checkpoint import load_checkpoint, save_checkpoint

SIZE = 12


class ChannelsLastNorm(nn.Module):
    """ConvNeXt-style LayerNorm over channels: (N, C, H, W) → LN on (N, H, W, C)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _head(channels: int) -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)]


def depthwise_layer_norm() -> nn.Module:
    """The reported model: a depthwise conv, then LayerNorm over [C, H, W]."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
        nn.LayerNorm([16, SIZE, SIZE]),
        nn.Conv2d(16, 32, 1),
        nn.ReLU(),
        *_head(32),
    )


def grouped_layer_norm() -> nn.Module:
    """A grouped conv (4 groups) under a channels-first and a channels-last LayerNorm."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, groups=4),
        nn.LayerNorm([32, SIZE, SIZE]),
        nn.Conv2d(32, 32, 1),
        ChannelsLastNorm(32),
        *_head(32),
    )


def prelu_group_norm_depthwise() -> nn.Module:
    """MobileNet-style blocks with PReLU and GroupNorm instead of BatchNorm/ReLU."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.GroupNorm(4, 16),
        nn.PReLU(16),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
        nn.GroupNorm(4, 16),
        nn.PReLU(),
        nn.Conv2d(16, 32, 1),
        nn.BatchNorm2d(32),
        nn.PReLU(32),
        *_head(32),
    )


MODELS: dict[str, Callable[[], nn.Module]] = {
    "depthwise_layer_norm": depthwise_layer_norm,
    "grouped_layer_norm": grouped_layer_norm,
    "prelu_group_norm_depthwise": prelu_group_norm_depthwise,
}


def _prune(model: nn.Module, images: torch.Tensor, **params: object) -> nn.Module:
    info = METHODS.get("l1_filter")
    ctx = CompressContext(example_inputs=images, progress=lambda _line: None)
    return finalize_pruning(info.fn(model, info.params(**params), ctx)).eval()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_user_cnn_prunes_and_round_trips(name: str, tmp_path: Path) -> None:
    build = MODELS[name]
    torch.manual_seed(0)
    images = torch.rand(4, 3, SIZE, SIZE)
    model = build().eval()
    before, _ = count_parameters(model)
    pruned = _prune(model, images, sparsity=0.5)
    after, _ = count_parameters(pruned)
    assert after < 0.7 * before, f"{name}: {after / before:.2f}x parameters"
    save_checkpoint(pruned, tmp_path, meta={})
    loaded = load_checkpoint(build, tmp_path).eval()
    assert count_parameters(loaded)[0] == after
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), pruned(images), rtol=0, atol=0)


def test_channels_first_layer_norm_shrinks_with_its_conv() -> None:
    torch.manual_seed(0)
    pruned = _prune(depthwise_layer_norm().eval(), torch.rand(2, 3, SIZE, SIZE), sparsity=0.5)
    depthwise, norm = pruned[2], pruned[3]
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == 8
    assert tuple(norm.normalized_shape) == (8, SIZE, SIZE)  # channels cut, not width
    assert tuple(norm.weight.shape) == (8, SIZE, SIZE)


def test_layer_norm_not_spanning_channels_is_a_harness_error() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.LayerNorm([SIZE, SIZE]), nn.Conv2d(16, 8, 1), *_head(8)
    )
    with pytest.raises(HarnessError) as info:
        _prune(model.eval(), torch.rand(2, 3, SIZE, SIZE), sparsity=0.5)
    message = str(info.value)
    assert "\n" not in message
    assert "LayerNorm '1'" in message and "[12, 12]" in message
    assert "global_magnitude" in message

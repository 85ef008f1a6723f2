"""A LayerNorm that torch-pruning couples to channels it does not normalise is a one-line
HarnessError naming it (observed: a grouped conv followed by ``nn.LayerNorm(W)`` on its
(N, C, H, W) output made l1_filter raise a raw "IndexError: index 32 is out of bounds
for dimension 0 with size 32" from torch-pruning's importance)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustness_harness.compress import METHODS, CompressContext
from robustness_harness.compress.prune import count_parameters
from robustness_harness.errors import HarnessError
from tests.unit.test_prune_user_cnns import ChannelsLastNorm

SIZE = 12


def _cnn(norm: nn.Module, channels: int = 32) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.Conv2d(16, channels, 3, padding=1, groups=4),
        norm,
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, 10),
    )


def _l1_filter(model: nn.Module, images: torch.Tensor) -> nn.Module:
    info = METHODS.get("l1_filter")
    ctx = CompressContext(example_inputs=images, progress=lambda _line: None)
    return info.fn(model, info.params(sparsity=0.5), ctx)


@pytest.mark.parametrize("channels", [32, 8])  # more channels than W = 12, and fewer
def test_layer_norm_over_width_is_a_one_line_error(channels: int) -> None:
    model = _cnn(nn.LayerNorm(SIZE), channels).eval()
    with pytest.raises(HarnessError) as info:
        _l1_filter(model, torch.rand(2, 3, SIZE, SIZE))
    message = str(info.value)
    assert "\n" not in message
    assert f"LayerNorm '2' (normalized_shape [{SIZE}])" in message
    assert f"its {channels} channels" in message
    assert "add '1' to ignore" in message and "global_magnitude" in message


def test_layer_norm_over_width_prunes_with_its_producer_ignored() -> None:
    """The fix the error names works: with '1' kept, the rest is pruned."""
    model = _cnn(nn.LayerNorm(SIZE)).eval()
    before, _ = count_parameters(model)
    info = METHODS.get("l1_filter")
    ctx = CompressContext(example_inputs=torch.rand(2, 3, SIZE, SIZE), progress=lambda _l: None)
    pruned = info.fn(model, info.params(sparsity=0.5, ignore=["1"]), ctx).eval()
    assert count_parameters(pruned)[0] < before
    assert pruned(torch.rand(1, 3, SIZE, SIZE)).shape == (1, 10)


def test_channels_last_layer_norm_prunes_with_its_conv() -> None:
    torch.manual_seed(0)
    pruned = _l1_filter(_cnn(ChannelsLastNorm(32)).eval(), torch.rand(2, 3, SIZE, SIZE)).eval()
    assert pruned[1].out_channels == 16
    assert tuple(pruned[2].norm.normalized_shape) == (16,)
    assert pruned(torch.rand(1, 3, SIZE, SIZE)).shape == (1, 10)

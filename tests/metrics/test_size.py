"""size: parameter counts, sparsity, bytes on disk and FLOPs against hand computations."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import prune

from robustness_harness.metrics import METRICS
from robustness_harness.metrics.context import ModelContext
from robustness_harness.metrics.size import count_flops, size
from robustness_harness.store.checkpoint import save_checkpoint


class FakeImages:
    image_ids: ClassVar[list[int]] = [1, 2]

    def load_image(self, image_id: int) -> np.ndarray:
        return np.full((8, 8, 3), 40 * image_id, np.uint8)


def tiny_cnn() -> nn.Module:
    """Conv 3→4 (3x3, pad 1) on 8x8, ReLU, flatten, Linear 256→5."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)
    ).eval()


def _ctx(model: nn.Module, checkpoint_dir: Path | None = None) -> ModelContext:
    return ModelContext(
        model=model,
        data=FakeImages(),
        device=torch.device("cpu"),
        task="classification",
        checkpoint_dir=checkpoint_dir,
    )


CONV_MACS = 4 * 8 * 8 * 3 * 3 * 3  # outputs x (in channels x kernel area)
LINEAR_MACS = 256 * 5


def test_params_match_numel() -> None:
    model = tiny_cnn()
    result = size(_ctx(model), measure="params")
    assert result.value == sum(p.numel() for p in model.parameters()) == 3 * 4 * 9 + 4 + 1280 + 5
    assert result.details["nonzero_params"] == result.details["params"]
    assert result.details["sparsity"] == 0.0
    assert size(_ctx(model)).value == result.details["nonzero_params"]  # the default measure


def test_sparsity_after_zeroing_half_the_weights() -> None:
    model = tiny_cnn()
    with torch.no_grad():
        for layer in (model[0], model[3]):
            layer.weight.view(-1)[: layer.weight.numel() // 2] = 0
    weights = model[0].weight.numel() + model[3].weight.numel()
    result = size(_ctx(model), measure="sparsity")
    assert result.value == 0.5
    total = sum(p.numel() for p in model.parameters())
    assert result.details["nonzero_params"] == total - weights // 2


def test_sparsity_sees_pruning_masks() -> None:
    model = tiny_cnn()
    prune.l1_unstructured(model[3], "weight", amount=0.25)
    details = size(_ctx(model), measure="nonzero_params").details
    assert details["nonzero_params"] == details["params"] - 320


def test_flops_of_single_layers_are_twice_the_macs() -> None:
    x = torch.rand(1, 3, 8, 8)
    assert count_flops(nn.Conv2d(3, 4, 3, padding=1, bias=False), x) == 2 * CONV_MACS
    assert count_flops(nn.Linear(256, 5), torch.rand(1, 256)) == 2 * LINEAR_MACS
    result = size(_ctx(tiny_cnn()), measure="flops")
    assert result.value == 2 * (CONV_MACS + LINEAR_MACS)


def test_detectors_get_a_list_of_one_image() -> None:
    class ListConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
            assert isinstance(images, list) and len(images) == 1
            return [self.conv(img[None]) for img in images]

    ctx = _ctx(ListConv())
    ctx.task = "detection"
    assert size(ctx, measure="flops").value == 2 * CONV_MACS


def test_unstructured_zeros_still_count_as_flops() -> None:
    model = tiny_cnn()
    with torch.no_grad():
        model[3].weight.zero_()
    assert size(_ctx(model), measure="flops").value == 2 * (CONV_MACS + LINEAR_MACS)


def test_bytes_is_the_checkpoint_file_size(tmp_path: Path) -> None:
    model = tiny_cnn()
    save_checkpoint(model, tmp_path, meta={"note": "test"})
    result = size(_ctx(model, tmp_path), measure="bytes")
    assert result.value == (tmp_path / "model.safetensors").stat().st_size


def test_bytes_without_checkpoint_is_the_serialised_state(tmp_path: Path) -> None:
    model = tiny_cnn()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.st")
    result = size(_ctx(model), measure="bytes")
    assert result.value == (tmp_path / "w.st").stat().st_size


def test_missing_checkpoint_file_and_bad_measure(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        size(_ctx(tiny_cnn(), tmp_path), measure="bytes")
    with pytest.raises(ValueError, match="measure must be one of params, nonzero_params"):
        size(_ctx(tiny_cnn()), measure="megabytes")  # type: ignore[arg-type]


def test_registered() -> None:
    info = METRICS.get("size")
    assert (info.task, info.inputs, info.higher_is_better, info.cacheable) == (
        "any", "model", False, False,
    )  # fmt: skip
    assert set(info.params) == {"measure"}

"""``ignore:`` on every prune and quantize method (issue 17 part 3): names or fnmatch
patterns of the user's model (without the ``model.input`` wrapper); a container keeps
everything inside it; a pattern that matches nothing is a one-line did-you-mean error;
an empty ``ignore`` leaves cache keys as they were."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized.modules.utils import WeightedQuantizedModule

from robustness_harness.compress import METHODS
from robustness_harness.compress.base import CompressContext
from robustness_harness.compress.quantize import QuantizedPart, quantization_record
from robustness_harness.errors import HarnessError
from robustness_harness.inference.input_contract import Contract, InputContract


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    ).eval()


IMAGES = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _ctx() -> CompressContext:
    return CompressContext(
        example_inputs=IMAGES,
        progress=lambda _line: None,
        train=lambda *_args, **_kwargs: None,
        extras={"calibration_images": lambda n: IMAGES[:n]},
    )


def _zeros(layer: nn.Module) -> float:
    weight = (
        layer.weight_orig * layer.weight_mask if hasattr(layer, "weight_mask") else layer.weight
    )
    return float((weight == 0).float().mean())


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("global_magnitude", {"sparsity": 0.5}),
        ("hydra", {"sparsity": 0.5, "score_steps": 0}),
    ],
)
def test_unstructured_methods_leave_ignored_layers_dense(method: str, params: dict) -> None:
    info = METHODS.get(method)
    model = info.fn(_net(), info.params(**params, ignore=["0.*"]), _ctx())
    assert _zeros(model[0][0]) == 0.0
    assert _zeros(model[1][0]) > 0.2 and _zeros(model[4]) > 0.2


def test_structured_ignore_names_the_users_model_inside_the_input_wrapper() -> None:
    """``ignore: [0]`` keeps the first block's width although the model runs wrapped."""
    wrapped = InputContract(_net(), Contract(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)))
    info = METHODS.get("l1_filter")
    pruned = info.fn(wrapped, info.params(sparsity=0.5, ignore=["0"]), _ctx())
    assert pruned.model[0][0].out_channels == 8
    assert pruned.model[1][0].out_channels == 8  # 16 halved


def test_quantize_ignore_keeps_layers_in_float() -> None:
    info = METHODS.get("ptq_int8")
    dense = _net()
    quantized = info.fn(
        copy.deepcopy(dense), info.params(calibration_images=8, ignore=["1"]), _ctx()
    )
    record = quantization_record(quantized)
    assert record is not None and record.float_layers == ("1",)
    graph = next(m for m in quantized.modules() if isinstance(m, QuantizedPart)).graph
    layers = dict(graph.named_modules())
    assert isinstance(layers["0.0"], WeightedQuantizedModule)
    assert not isinstance(layers["1.0"], WeightedQuantizedModule)  # fused Conv+BN+ReLU, float
    assert isinstance(layers["4"], WeightedQuantizedModule)
    with torch.no_grad():
        error = (quantized(IMAGES) - dense(IMAGES)).abs().max()
    assert error < 0.1 * dense(IMAGES).abs().max()


def test_a_pattern_matching_nothing_is_one_line() -> None:
    info = METHODS.get("global_magnitude")
    with pytest.raises(HarnessError) as err:
        info.fn(_net(), info.params(sparsity=0.5, ignore=["stem.*"]), _ctx())
    assert str(err.value).startswith(
        "ignore: global_magnitude: no module of Sequential matches 'stem.*'"
    )
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method", ["global_magnitude", "hydra", "ptq_int8", "l1_filter"])
def test_empty_ignore_is_not_in_the_dumped_step(method: str) -> None:
    info = METHODS.get(method)
    extra = {} if method == "ptq_int8" else {"sparsity": 0.5}
    assert "ignore" not in info.params(**extra).model_dump()
    assert info.params(**extra, ignore=["a"]).model_dump()["ignore"] == ("a",)

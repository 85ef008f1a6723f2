"""Network slimming: L1 on BatchNorm scales, then global channel removal by |γ|."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from robustness_harness.compress import METHODS, CompressContext, count_parameters
from robustness_harness.compress.slimming import SlimmingParams, batch_norms, slimming
from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.errors import HarnessError
from robustness_harness_models.toydrive import build_toydrive_fcos
from tests.unit import compress_helpers as h

# one torch thread for every test here, and a small toysigns training set per module
_one_thread = h.one_thread
data = h.signs_data


def _bn_channels(model: nn.Module) -> int:
    return sum(bn.num_features for bn in batch_norms(model))


def test_registered() -> None:
    assert METHODS.get("slimming").params is SlimmingParams


@pytest.mark.slow
@pytest.mark.parametrize("sparsity", [0.25, 0.5])
def test_slimming_reaches_sparsity_and_round_trips(
    data: ClassificationData, sparsity: float, tmp_path: Path
) -> None:
    model = h.cnn()
    before = _bn_channels(model)
    lines: list[str] = []
    ctx = h.context(data, lines)
    params = SlimmingParams(sparsity=sparsity, train_steps=10, penalty=1e-3)
    slimming(model, params, ctx)
    assert 1 - _bn_channels(model) / before == pytest.approx(sparsity, abs=0.01)
    assert ctx.train.calls[0]["steps"] == 10  # type: ignore[union-attr]
    assert f"BatchNorm channels ({sparsity:.3f})" in lines[-1]
    x = h.images(data)
    assert model.eval()(x).shape == (8, 12)
    h.assert_round_trip(model, h.cnn, x, tmp_path)


@pytest.mark.slow
def test_penalty_shrinks_batchnorm_scales(data: ClassificationData) -> None:
    """The regularizer handed to ctx.train is λ·Σ|γ|, and training with it shrinks Σ|γ|."""
    sums = []
    for penalty in (0.0, 0.5):
        model = h.cnn()
        ctx = h.context(data)
        slimming(model, SlimmingParams(sparsity=0.0, train_steps=20, penalty=penalty), ctx)
        regularizer = ctx.train.calls[0]["regularizer"]  # type: ignore[union-attr]
        gammas = sum(float(bn.weight.detach().abs().sum()) for bn in batch_norms(model))
        assert float(regularizer(model).detach()) == pytest.approx(penalty * gammas, rel=1e-5)
        sums.append(gammas)
    assert sums[1] < 0.95 * sums[0]  # Adam moves each γ by at most ~lr per step


def test_removes_the_smallest_scales_globally(data: ClassificationData) -> None:
    model = h.cnn()
    norms = batch_norms(model)
    with torch.no_grad():
        for bn in norms:
            bn.weight.copy_(torch.linspace(1.0, 2.0, bn.num_features))
        norms[2].weight[:20] = 0.01  # the last layer holds the 20 smallest scales
    ctx = CompressContext(example_inputs=h.images(data), progress=lambda _: None)
    slimming(model, SlimmingParams(sparsity=20 / 56, train_steps=0), ctx)
    assert [bn.num_features for bn in batch_norms(model)] == [8, 16, 12]
    assert float(batch_norms(model)[2].weight.detach().min()) >= 1.0


def test_slimming_fcos_prunes_batchnorm_groups_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fcos = build_toydrive_fcos()
    head = [m.out_channels for m in fcos.head.modules() if isinstance(m, nn.Conv2d)]
    before = _bn_channels(fcos)
    total, _ = count_parameters(fcos)
    ctx = CompressContext(example_inputs=torch.rand(2, 3, 128, 128), progress=lambda _: None)
    slimming(fcos, SlimmingParams(sparsity=0.4, train_steps=0), ctx)
    assert 1 - _bn_channels(fcos) / before == pytest.approx(0.4, abs=0.01)
    assert [m.out_channels for m in fcos.head.modules() if isinstance(m, nn.Conv2d)] == head
    assert count_parameters(fcos)[0] < total
    images = [torch.rand(3, 128, 128)]
    h.assert_round_trip(fcos, build_toydrive_fcos, images, tmp_path)


def test_slimming_errors(data: ClassificationData) -> None:
    ctx = CompressContext(example_inputs=h.images(data), progress=lambda _: None)
    with pytest.raises(HarnessError, match="no training is available"):
        slimming(h.cnn(), SlimmingParams(sparsity=0.5), ctx)
    with pytest.raises(HarnessError, match=r"at most 0\.946 can be removed"):
        slimming(h.cnn(), SlimmingParams(sparsity=0.99, train_steps=0), ctx)
    no_bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    no_bn(torch.rand(1, 3, 32, 32))
    with pytest.raises(HarnessError, match="needs BatchNorm layers"):
        slimming(no_bn, SlimmingParams(sparsity=0.5, train_steps=0), ctx)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sparsity": 1.0}, "sparsity must be in [0, 1)"),
        ({"sparsity": 0.5, "penalty": -1e-4}, "penalty"),
        ({"sparsity": 0.5, "train_steps": -1}, "train_steps"),
        ({"sparsity": 0.5, "ignore": "a"}, "ignore must be a list"),
        ({"sparsity": 0.5, "lambda": 1e-4}, "lambda"),
    ],
)
def test_params_reject(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=None) as err:
        SlimmingParams.model_validate(params)
    assert message in str(err.value)

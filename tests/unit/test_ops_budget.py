"""Trainable channel gates under an ops budget, then physical channel removal."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch_pruning as tp
from pydantic import ValidationError
from torch import nn

from robustness_harness.compress import METHODS, CompressContext
from robustness_harness.compress.graph import make_pruner, remove_slots, trace_plan
from robustness_harness.compress.masks import OpsBudgetParams, OpsModel, layer_macs, ops_budget
from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.errors import HarnessError
from robustness_harness_models.toydrive import build_toydrive_fcos
from tests.unit import compress_helpers as h

WIDTHS = (32, 64, 128)


# one torch thread for every test here, and a small toysigns training set per module
_one_thread = h.one_thread
data = h.signs_data


def macs(model: nn.Module, run: object) -> float:
    """Reference count: k_h·k_w·C_in/groups MACs per output element of every Conv,
    in·out of every Linear, on one forward pass (independent of
    robustness_harness.compress.masks)."""
    total = [0.0]

    def hook(module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            fan_in = module.in_features
        total[0] += out[0].numel() * fan_in

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        run(model.eval())  # type: ignore[operator]
    for handle in handles:
        handle.remove()
    return total[0]


def test_registered() -> None:
    assert METHODS.get("ops_budget").params is OpsBudgetParams


@pytest.mark.slow
@pytest.mark.parametrize("budget", [0.4, 0.7])
def test_ops_budget_met_within_one_percent(
    data: ClassificationData, budget: float, tmp_path: Path
) -> None:
    model = h.cnn(WIDTHS)
    x = h.images(data)
    dense = macs(model, lambda m: m(x[:1]))
    lines: list[str] = []
    ctx = h.context(data, lines)
    ops_budget(model, OpsBudgetParams(budget=budget, steps=30), ctx)
    ratio = macs(model, lambda m: m(x[:1])) / dense
    assert budget - 0.01 <= ratio <= budget
    call = ctx.train.calls[0]  # type: ignore[union-attr]
    assert call["steps"] == 30 and call["lr"] == 1e-3 and call["regularizer"] is not None
    assert not [n for n, _ in model.named_parameters() if "gate" in n]  # gates are gone
    record = ctx.extras["ops_budget"]
    assert record["ops_ratio"] == pytest.approx(ratio, rel=1e-6)
    assert record["params"] == sum(p.numel() for p in model.parameters())
    assert f"ops {ratio:.3f}x dense (budget {budget}" in lines[-1] and "params" in lines[-1]
    h.assert_round_trip(model, lambda: h.cnn(WIDTHS), x, tmp_path)


def test_ops_model_is_exact_for_removed_channels(data: ClassificationData) -> None:
    """ops(gates) equals the MACs of the model with the gated-off channels removed."""
    model = h.cnn(WIDTHS)
    x = h.images(data)
    plan = trace_plan(model, x, (), "test")
    with torch.enable_grad():
        pruner = make_pruner(model, plan, tp.importance.MagnitudeImportance(p=1))
    ops = OpsModel(pruner, layer_macs(model, plan))
    dense = macs(model, lambda m: m(x[:1]))
    assert ops.dense == pytest.approx(dense)
    gates = torch.ones(ops.n_slots + 1, requires_grad=True)
    assert float(ops.ratio(gates.detach())) == pytest.approx(1.0)
    off = torch.ones(ops.n_slots + 1)
    off[[0, 5, 40, 41, 100, 150]] = 0  # slots of all three channel groups
    predicted = float(ops.ratio(off))
    chosen = [
        (group, [s - a for s in (0, 5, 40, 41, 100, 150) if a <= s < b])
        for group, a, b in zip(ops.groups, ops.offsets[:-1], ops.offsets[1:], strict=True)
    ]
    remove_slots(pruner, chosen)
    assert macs(model, lambda m: m(x[:1])) / dense == pytest.approx(predicted, rel=1e-6)
    ops.ratio(gates).backward()
    assert gates.grad is not None and bool((gates.grad[:-1] > 0).all())


def test_ops_budget_fcos(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fcos = build_toydrive_fcos()
    images = [torch.rand(3, 128, 128) for _ in range(2)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[30.0, 30.0, 90.0, 120.0]]), "labels": torch.tensor([3])},
    ]

    def train(
        model: nn.Module, steps: int, regularizer: object = None, **overrides: object
    ) -> None:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        model.train()
        for _ in range(steps):
            loss = sum(model(images, targets).values()) + regularizer(model)  # type: ignore[operator]
            opt.zero_grad()
            loss.backward()
            opt.step()

    def run(model: nn.Module) -> object:
        return model.head(list(model.backbone(torch.rand(1, 3, 128, 128)).values()))

    dense = macs(fcos, run)
    ctx = CompressContext(example_inputs=torch.rand(2, 3, 128, 128), progress=lambda _: None)
    ctx.train = train
    ops_budget(fcos, OpsBudgetParams(budget=0.5, steps=2), ctx)
    assert 0.49 <= macs(fcos, run) / dense <= 0.5
    for module in fcos.modules():
        if isinstance(module, nn.GroupNorm):
            assert module.num_channels % module.num_groups == 0
    h.assert_round_trip(fcos, build_toydrive_fcos, images[:1], tmp_path)


@pytest.mark.slow
def test_ops_budget_errors(data: ClassificationData) -> None:
    no_train = CompressContext(example_inputs=h.images(data), progress=lambda _: None)
    with pytest.raises(HarnessError, match="no training is available"):
        ops_budget(h.cnn(), OpsBudgetParams(budget=0.5), no_train)
    with pytest.raises(HarnessError, match="below what one channel per layer group needs"):
        ops_budget(h.cnn(), OpsBudgetParams(budget=0.001, steps=1), h.context(data))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"budget": 0.0}, "budget must be in (0, 1]"),
        ({"budget": 1.5}, "budget must be in (0, 1]"),
        ({"budget": True}, "budget must be a number"),
        ({"budget": 0.5, "penalty": 0}, "penalty"),
        ({"budget": 0.5, "steps": 0}, "steps"),
        ({"budget": 0.5, "sparsity": 0.5}, "sparsity"),
        ({}, "budget"),
    ],
)
def test_params_reject(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        OpsBudgetParams.model_validate(params)
    assert message in str(err.value)

"""Trainable channel masks under an operations budget (Vemparala et al., in-train pruning).

Every prunable channel group (torch-pruning DepGraph) gets one gate per channel slot,
``M`` initialised to 1. The forward pass uses the binary gate ``M ≥ 0.5`` with a
straight-through gradient, multiplied onto each channel where its value is final (after
its norm layer, else after its Conv/Linear). Training adds
``b · max(0, ops(M)/ops_dense − ψ*)`` to the task loss, where ``ops`` sums every
Conv/Linear layer's dense MACs times the kept fractions of its input and output
channels (only the output fraction for depthwise convs). Afterwards the gates are
calibrated to the budget (lowest ``M`` off while above ψ*, highest ``M`` back on while
that stays within it) and the off channels are removed physically, so the final ops
ratio lies within ``tolerance`` below ψ*.

The gates have their own optimizer (the paper trains the masks with SGD), see
``ChannelGates``; the weights train at ``lr`` with the variant's recipe meanwhile.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from pydantic import Field, field_validator
from torch import nn

from robustness_harness.compress.base import CompressContext
from robustness_harness.compress.graph import (
    NORM_TYPES,
    PRUNABLE_TYPES,
    TracePlan,
    after_surgery,
    channel_groups,
    forward_hooks,
    make_pruner,
    modes_kept,
    prunable_layers,
    remove_slots,
    trace_plan,
)
from robustness_harness.compress.names import IgnoreParams
from robustness_harness.compress.prune import count_parameters, plain_weights
from robustness_harness.compress.schedule import (
    check_not_bool,
    require_training,
)
from robustness_harness.compress.structure import remember_base
from robustness_harness.errors import HarnessError
from robustness_harness.registry import register_compression
from robustness_harness.suite.problems import SpecProblem

BUDGET_HINT = "use the target share of dense operations, e.g. budget: 0.5"


class OpsBudgetParams(IgnoreParams):
    """``budget`` ψ*: target ops (Conv/Linear MACs) as a share of the dense model, in
    (0, 1]; ``penalty`` b of the hinge loss; ``steps`` optimizer steps of gate training
    at learning rate ``lr`` (gates: ``gate_lr``); ``tolerance``: how far below ψ* the
    final ops may lie; ``ignore``: modules whose channels are kept."""

    budget: float
    penalty: float = Field(10.0, gt=0)
    steps: int = Field(200, ge=1)
    lr: float = Field(1e-3, gt=0)
    gate_lr: float = Field(0.02, gt=0)
    tolerance: float = Field(0.01, gt=0, lt=1)

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_type(cls, value: Any) -> Any:
        return check_not_bool(value, "budget", BUDGET_HINT)

    @field_validator("budget")
    @classmethod
    def _budget_range(cls, value: float) -> float:
        if not 0.0 < value <= 1.0:
            raise SpecProblem(f"budget must be in (0, 1], got {value!r}", hint=BUDGET_HINT)
        return value


# -- counting operations ---------------------------------------------------------------------


def layer_macs(model: nn.Module, plan: TracePlan) -> dict[nn.Module, float]:
    """Multiply-accumulates per image of every Conv/Linear layer on the traced forward
    pass (summed over calls, e.g. a detector head shared by pyramid levels)."""
    macs: dict[nn.Module, float] = defaultdict(float)

    def count(module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        per_image = out.numel() / out.shape[0]
        if isinstance(module, nn.Linear):
            macs[module] += per_image * module.in_features
        else:
            fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
            macs[module] += per_image * fan_in

    layers = [m for _, m in prunable_layers(model)]
    with forward_hooks(layers, count), torch.no_grad(), modes_kept(model):
        plan.run(model.eval())
    return dict(macs)


def total_macs(model: nn.Module, plan: TracePlan) -> float:
    """Conv/Linear MACs per image of ``model`` on the traced forward pass."""
    return sum(layer_macs(model, plan).values())


@dataclass
class _Layer:
    macs: float
    out_index: torch.Tensor  # gate slot of each output channel (the last slot is always 1)
    in_index: torch.Tensor
    depthwise: bool


class OpsModel:
    """Ops of the gated model as a differentiable function of the flat gate vector.

    Slots ``offsets[g] .. offsets[g] + groups[g].slots`` belong to channel group ``g``;
    one extra slot (index ``n_slots``) stands for channels no group can remove.
    """

    def __init__(self, pruner: tp.pruner.MetaPruner, macs: dict[nn.Module, float]) -> None:
        self.groups = groups = channel_groups(pruner)
        self.offsets = [0]
        for group in groups:
            self.offsets.append(self.offsets[-1] + group.slots)
        self.n_slots = self.offsets[-1]
        self.out_index: dict[nn.Module, torch.Tensor] = {}
        in_index: dict[nn.Module, torch.Tensor] = {}
        for gi, group in enumerate(groups):
            for i, (dep, idxs) in enumerate(group.group):
                module = dep.target.module
                is_out = pruner.DG.is_out_channel_pruning_fn(dep.handler)
                if not isinstance(module, PRUNABLE_TYPES + NORM_TYPES) or not idxs:
                    continue
                if not is_out and not isinstance(module, PRUNABLE_TYPES):
                    continue
                table = self.out_index if is_out else in_index
                if module not in table:
                    table[module] = torch.full((_channels(module, is_out),), self.n_slots)
                slots = torch.tensor(group.group[i].root_idxs) % group.slots + self.offsets[gi]
                table[module][torch.tensor(idxs)] = slots
        self.dense = sum(macs.values())
        self.layers = [
            _Layer(
                count,
                self.out_index.get(m, torch.full((_channels(m, True),), self.n_slots)),
                in_index.get(m, torch.full((_channels(m, False),), self.n_slots)),
                isinstance(m, nn.modules.conv._ConvNd) and 1 < m.groups == m.in_channels,
            )
            for m, count in macs.items()
        ]

    def ratio(self, gates: torch.Tensor) -> torch.Tensor:
        """Ops / dense ops for ``gates`` (``n_slots + 1`` values, the last one 1)."""
        total = gates.new_zeros(())
        for layer in self.layers:
            kept = gates[layer.out_index.to(gates.device)].mean()
            if not layer.depthwise:
                kept = kept * gates[layer.in_index.to(gates.device)].mean()
            total = total + layer.macs * kept
        return total / self.dense

    def group_of(self, slot: int) -> int:
        """The channel group that ``slot`` belongs to."""
        return next(g for g in range(len(self.groups)) if slot < self.offsets[g + 1])


def _channels(module: nn.Module, out: bool) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features if out else module.in_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels if out else module.in_channels
    return int(module.weight.shape[0])  # norm layers


# -- gates -----------------------------------------------------------------------------------


class ChannelGates:
    """Gates ``M`` ∈ [0, 1] of all slots (initially 1), binarised straight-through.

    They have their own optimizer, stepped as soon as their gradient has accumulated:
    ``M −= lr · g / rms`` with ``rms`` a running root-mean-square of ``g`` over all
    slots (one scale for all, so slots keep their relative speeds), then clipped to
    [0, 1]. The training loop's optimizer only holds the model's weights.
    """

    def __init__(self, n_slots: int, lr: float, device: torch.device) -> None:
        self.m = torch.ones(n_slots, device=device, requires_grad=True)
        self.lr = lr
        self._mean_square = 0.0
        self._steps = 0
        self.m.register_post_accumulate_grad_hook(self._step)

    def _step(self, m: torch.Tensor) -> None:
        assert m.grad is not None
        with torch.no_grad():
            self._steps += 1
            self._mean_square = 0.9 * self._mean_square + 0.1 * float(m.grad.pow(2).mean())
            rms = math.sqrt(self._mean_square / (1 - 0.9**self._steps))
            if rms > 0:
                m.sub_(self.lr * m.grad / rms).clamp_(0.0, 1.0)
        m.grad = None

    def hard(self) -> torch.Tensor:
        """Binary gates (``M ≥ 0.5``) with the gradient of ``M``, plus the constant 1 slot."""
        gate = (self.m >= 0.5).to(self.m) + self.m - self.m.detach()
        return torch.cat([gate, self.m.new_ones(1)])


def _gate_points(pruner: tp.pruner.MetaPruner, ops: OpsModel) -> list[nn.Module]:
    """Modules whose output carries a channel's final value: norm layers, and Conv/Linear
    layers that no norm layer directly follows."""
    points = []
    for module in ops.out_index:
        if isinstance(module, PRUNABLE_TYPES):
            node = pruner.DG.module2node.get(module)
            outputs = [o.module for o in node.outputs] if node is not None else []
            if outputs and all(isinstance(o, NORM_TYPES) for o in outputs):
                continue
        points.append(module)
    return points


@contextmanager
def gates_attached(
    model: nn.Module, gates: ChannelGates, points: list[nn.Module], ops: OpsModel
) -> Iterator[None]:
    """Multiply the outputs of ``points`` by their channels' gates while inside."""

    def hook(module: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
        values = gates.hard().to(out.device)[ops.out_index[module].to(out.device)]
        return out * values.view(1, -1, *([1] * (out.ndim - 2)))

    handles = [m.register_forward_hook(hook) for m in points]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# -- meeting the budget --------------------------------------------------------------------------


def calibrate(
    ops: OpsModel, scores: torch.Tensor, on: torch.Tensor, budget: float, tolerance: float
) -> torch.Tensor:
    """Kept slots (bool) whose ops ratio is in [budget − tolerance, budget] where the slot
    sizes allow: starting from ``on``, switch off the lowest-scored slots while above the
    budget (first skipping slots that would undershoot by more than tolerance / 2), then
    switch the highest-scored off slots back on wherever they still fit. Every channel
    group keeps at least one slot."""
    on = on.clone()
    const = torch.ones(1)
    spans = list(zip(ops.offsets[:-1], ops.offsets[1:], strict=True))

    def ratio() -> float:
        return float(ops.ratio(torch.cat([on.float(), const])))

    for a, b in spans:
        if not on[a:b].any():
            on[a + int(torch.argmax(scores[a:b]))] = True
    counts = [int(on[a:b].sum()) for a, b in spans]
    for careful in (True, False):
        for slot in torch.argsort(scores).tolist():
            if ratio() <= budget:
                break
            g = ops.group_of(slot)
            if on[slot] and counts[g] > 1:
                on[slot] = False
                if careful and ratio() < budget - tolerance / 2:
                    on[slot] = True
                    continue
                counts[g] -= 1
    if ratio() > budget:
        raise HarnessError(
            f"ops_budget {budget} is below what one channel per layer group needs "
            f"({ratio():.3f} of the dense ops)",
            field="budget",
            hint=f"use budget >= {math.ceil(ratio() * 100) / 100:.2f}",
        )
    for slot in torch.argsort(scores, descending=True).tolist():
        if ratio() >= budget - tolerance / 4:
            break
        if not on[slot]:
            on[slot] = True
            if ratio() > budget:
                on[slot] = False
    return on


def _train_gates(
    model: nn.Module,
    params: OpsBudgetParams,
    train: Callable[..., None],
    pruner: tp.pruner.MetaPruner,
    ops: OpsModel,
) -> ChannelGates:
    gates = ChannelGates(ops.n_slots, params.gate_lr, next(model.parameters()).device)

    def hinge(_model: nn.Module) -> torch.Tensor:
        return params.penalty * torch.relu(ops.ratio(gates.hard()) - params.budget)

    with gates_attached(model, gates, _gate_points(pruner, ops), ops):
        train(model, params.steps, regularizer=hinge, lr=params.lr)
    return gates


@register_compression("prune", "ops_budget", params=OpsBudgetParams, uses="train")
def ops_budget(model: nn.Module, params: OpsBudgetParams, ctx: CompressContext) -> nn.Module:
    """Train channel gates under the ops budget, then remove the gated-off channels."""
    train = require_training(
        ctx, "ops_budget trains channel gates", "prune.method", "use prune: {method: l1_filter}"
    )
    plan = trace_plan(model, ctx.example_inputs, params.ignore, "ops_budget")
    before, _ = count_parameters(model)
    remember_base(model)
    with plain_weights(model), modes_kept(model), torch.enable_grad():
        pruner = make_pruner(model, plan, tp.importance.MagnitudeImportance(p=1))
    ops = OpsModel(pruner, layer_macs(model, plan))
    gates = _train_gates(model, params, train, pruner, ops)
    scores = gates.m.detach().cpu()
    trained = scores >= 0.5
    trained_ratio = float(ops.ratio(torch.cat([trained.float(), torch.ones(1)])))
    on = calibrate(ops, scores, trained, params.budget, params.tolerance)
    chosen = [
        (group, (~on[a:b]).nonzero().view(-1).tolist())
        for group, a, b in zip(ops.groups, ops.offsets[:-1], ops.offsets[1:], strict=True)
    ]
    with plain_weights(model), modes_kept(model), torch.enable_grad():
        removed = remove_slots(pruner, chosen)
        after_surgery(model, "ops_budget")
    ratio = total_macs(model, plan) / ops.dense
    after, _ = count_parameters(model)
    changed = int((on != trained).sum())
    ctx.extras["ops_budget"] = {"ops_ratio": ratio, "params": after, "params_ratio": after / before}
    ctx.progress(
        f"ops_budget: ops {ratio:.3f}x dense (budget {params.budget}, gates alone "
        f"{trained_ratio:.3f}, {changed} set by calibration), {removed} channels removed, "
        f"params {before} -> {after} ({after / before:.2f}x)"
    )
    return model

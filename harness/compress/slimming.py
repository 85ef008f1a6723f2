"""Network slimming (Liu et al. 2017): sparsify BatchNorm scales, then remove small-|γ| channels.

A training phase adds λ·Σ|γ| over every BatchNorm scale to the task loss; then the
channels with the globally smallest |γ| are removed physically with torch-pruning
(its BN-scale importance, unnormalised so |γ| compare across layers). ``sparsity`` is
the share of BatchNorm-carrying channels removed; every layer group keeps at least
its largest-|γ| channel. Channel groups without BatchNorm (e.g. the GroupNorm head of
FCOS) are not pruned.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from pydantic import Field
from torch import nn

from robustness_harness.compress.base import CompressContext
from robustness_harness.compress.graph import (
    ChannelGroup,
    after_surgery,
    channel_groups,
    make_pruner,
    modes_kept,
    remove_slots,
    trace_plan,
)
from robustness_harness.compress.prune import count_parameters, plain_weights
from robustness_harness.compress.schedule import (
    SparsityParams,
    require_training,
)
from robustness_harness.compress.structure import remember_base
from robustness_harness.errors import HarnessError
from robustness_harness.registry import register_compression


class SlimmingParams(SparsityParams):
    """``sparsity``: share of BatchNorm channels removed, ranked globally by |γ|;
    ``penalty``: λ of the L1 term λ·Σ|γ| during ``train_steps`` optimizer steps
    (0 steps: prune the scales as they are); ``ignore``: modules to keep."""

    penalty: float = Field(1e-4, ge=0)
    train_steps: int = Field(100, ge=0)


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every (trainable-scale) BatchNorm layer of ``model``."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
    ]


def bn_l1_penalty(norms: list[nn.Module], penalty: float) -> torch.Tensor:
    """λ·Σ|γ| over ``norms`` (the slimming regularizer)."""
    return penalty * sum(bn.weight.abs().sum() for bn in norms)


def select_smallest(
    scored: list[tuple[ChannelGroup, torch.Tensor]], sparsity: float
) -> list[tuple[ChannelGroup, list[int]]]:
    """``(group, slots)``: the globally lowest-scored ``sparsity`` share of all slots,
    never a group's best one. Equal scores (e.g. the γ = 1 of an untrained model) go by
    rank within their group, so ties thin every group alike instead of emptying the first."""
    total = sum(len(score) for _, score in scored)
    wanted = round(sparsity * total)
    candidates = []  # (score, rank within the group / its size, group index, slot)
    for gi, (_, score) in enumerate(scored):
        best = int(torch.argmax(score))
        ranks = torch.argsort(torch.argsort(score, stable=True), stable=True).tolist()
        candidates += [
            (float(v), ranks[s] / len(score), gi, s)
            for s, v in enumerate(score.tolist())
            if s != best
        ]
    if wanted > len(candidates):
        most = len(candidates) / total
        raise HarnessError(
            f"sparsity {sparsity} would empty layer groups: every one of the {len(scored)} "
            f"groups keeps at least one channel, so at most {most:.3f} can be removed",
            field="sparsity",
            hint=f"use sparsity <= {most:.2f}",
        )
    candidates.sort()
    chosen: list[list[int]] = [[] for _ in scored]
    for _, _, gi, slot in candidates[:wanted]:
        chosen[gi].append(slot)
    return [(group, slots) for (group, _), slots in zip(scored, chosen, strict=True)]


@register_compression(
    "prune", "slimming", params=SlimmingParams, uses=lambda p: "train" if p.train_steps else None
)
def slimming(model: nn.Module, params: SlimmingParams, ctx: CompressContext) -> nn.Module:
    """L1-sparsify BatchNorm scales with ``ctx.train``, then remove the smallest-|γ| channels."""
    plan = trace_plan(model, ctx.example_inputs, params.ignore, "slimming")
    norms = batch_norms(model)
    if not norms:
        raise HarnessError(
            f"slimming needs BatchNorm layers, {type(model).__name__} has none",
            hint="use prune: {method: l1_filter, ...} for this model",
        )
    if params.train_steps:
        train = require_training(
            ctx,
            "slimming trains with an L1 penalty on BatchNorm scales",
            "prune",
            "set train_steps: 0",
        )
        train(
            model, params.train_steps, regularizer=lambda _m: bn_l1_penalty(norms, params.penalty)
        )
    if params.sparsity == 0:
        return model
    before, _ = count_parameters(model)
    remember_base(model)
    importance = tp.importance.BNScaleImportance(normalizer=None)
    with plain_weights(model), modes_kept(model), torch.enable_grad():
        pruner = make_pruner(model, plan, importance, method="slimming")
        scored = []
        for group in channel_groups(pruner):
            score = importance(group.group)
            if score is not None:
                scored.append((group, score.view(group.tied, -1).mean(0)))
        if not scored:
            raise HarnessError(
                f"slimming found no prunable channel group with BatchNorm in "
                f"{type(model).__name__}",
                hint="check ignore, or use prune: {method: l1_filter, ...}",
            )
        removed = remove_slots(pruner, select_smallest(scored, params.sparsity))
        after_surgery(model, "slimming")
    total = sum(group.channels for group, _ in scored)
    after, _ = count_parameters(model)
    ctx.progress(
        f"slimming: removed {removed}/{total} BatchNorm channels ({removed / total:.3f}), "
        f"params {before} -> {after} ({after / before:.2f}x)"
    )
    return model

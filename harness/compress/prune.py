"""Pruning methods: global unstructured L1 magnitude and structured L1 filter pruning.

``global_magnitude`` zeroes weights through ``torch.nn.utils.prune`` masks, which stay
active during fine-tuning; ``finalize_pruning`` makes them permanent before saving.
``l1_filter`` removes whole filters with torch-pruning (DepGraph), so the model gets
physically smaller; ``robustness_harness.store.checkpoint`` saves its new shapes. Both
prune at once or gradually with the AGP schedule (``robustness_harness.compress.schedule``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch_pruning as tp
from pydantic import Field
from torch import nn
from torch.nn.utils import prune

from robustness_harness.compress.base import CompressContext
from robustness_harness.compress.graph import (
    PRUNABLE_TYPES,
    after_surgery,
    capped_ratios,
    make_pruner,
    modes_kept,
    prunable_layers,
    trace_plan,
)
from robustness_harness.compress.names import inside, matching
from robustness_harness.compress.schedule import (
    SPARSITY_HINT,
    ScheduleParams,
    agp_sparsity,
    run_schedule,
    schedule_data_use,
)
from robustness_harness.compress.structure import remember_base
from robustness_harness.errors import HarnessError
from robustness_harness.registry import register_compression

__all__ = [
    "PRUNABLE_TYPES",
    "SPARSITY_HINT",
    "GlobalMagnitudeParams",
    "L1FilterParams",
    "agp_sparsity",
    "count_parameters",
    "effective_tensor",
    "finalize_pruning",
    "global_magnitude",
    "l1_filter",
    "model_sparsity",
    "prunable_layers",
    "prune_to_sparsity",
]


# -- parameters ----------------------------------------------------------------------------


class GlobalMagnitudeParams(ScheduleParams):
    """``sparsity``: share of Conv/Linear weights zeroed. ``schedule: agp`` prunes gradually
    (Zhu & Gupta): ``steps`` pruning events from ``initial_sparsity``, ``prune_every``
    optimizer steps of fine-tuning apart."""


class L1FilterParams(ScheduleParams):
    """``sparsity``: share of filters removed per layer group; ``ignore``: modules to keep;
    ``round_to``: keep channel counts multiples of it; ``schedule: agp`` as for
    ``global_magnitude`` (filters removed gradually between fine-tuning bursts)."""

    round_to: int | None = Field(None, ge=1)


# -- measuring -------------------------------------------------------------------------------


def effective_tensor(module: nn.Module, name: str) -> torch.Tensor:
    """``module.<name>`` as the forward pass sees it (``orig * mask`` while pruning is active)."""
    mask = getattr(module, f"{name}_mask", None)
    orig = getattr(module, f"{name}_orig", None)
    if isinstance(mask, torch.Tensor) and isinstance(orig, torch.Tensor):
        return orig.detach() * mask
    return getattr(module, name).detach()


def model_sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over all Conv/Linear weights (through pruning masks)."""
    zeros = total = 0
    for _, module in prunable_layers(model):
        weight = effective_tensor(module, "weight")
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, nonzero)`` parameter counts; masked entries count as zero."""
    total = nonzero = 0
    for module in model.modules():
        for pname, param in module.named_parameters(recurse=False):
            name = pname.removesuffix("_orig")
            value = effective_tensor(module, name) if name != pname else param.detach()
            total += value.numel()
            nonzero += int(torch.count_nonzero(value))
    return total, nonzero


# -- unstructured: global magnitude --------------------------------------------------------------


def _pruning_hooks(model: nn.Module) -> Iterator[tuple[nn.Module, prune.BasePruningMethod]]:
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                yield module, hook


def _refresh_masked_weights(model: nn.Module) -> None:
    """Recompute ``weight = weight_orig * weight_mask`` (stale after optimizer steps)."""
    for module, hook in _pruning_hooks(model):
        setattr(module, hook._tensor_name, hook.apply_mask(module))


def pruned_layers(
    model: nn.Module, ignore: Sequence[str] = (), method: str = ""
) -> list[nn.Module]:
    """The Conv/Linear layers a method prunes: all but those ``ignore`` names or patterns
    match (and those inside a matched container)."""
    skipped = matching(model, ignore, field="ignore", method=method)
    return [m for name, m in prunable_layers(model) if not inside(name, skipped)]


def prune_to_sparsity(
    model: nn.Module, sparsity: float, layers: Sequence[nn.Module] | None = None
) -> None:
    """Globally mask the smallest-|w| weights of ``layers`` (default: every Conv/Linear
    layer) until ``sparsity`` of them are masked.

    Existing masks are kept and count towards the target, so calling this with a
    growing target prunes gradually (the building block of schedules such as AGP).
    """
    layers = [m for _, m in prunable_layers(model)] if layers is None else list(layers)
    total = sum(m.weight.numel() for m in layers)
    masked = sum(int((m.weight_mask == 0).sum()) for m in layers if hasattr(m, "weight_mask"))
    extra = round(sparsity * total) - masked
    if extra <= 0:
        return
    _refresh_masked_weights(model)
    prune.global_unstructured(
        [(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=extra
    )


@register_compression(
    "prune", "global_magnitude", params=GlobalMagnitudeParams, uses=schedule_data_use
)
def global_magnitude(
    model: nn.Module, params: GlobalMagnitudeParams, ctx: CompressContext
) -> nn.Module:
    """Zero the globally smallest Conv/Linear weights (of the layers not ignored); masks
    stay on for fine-tuning."""
    if not prunable_layers(model):
        raise HarnessError(
            f"global_magnitude found no Conv or Linear layers in {type(model).__name__}",
            hint="prune a model built from nn.Conv*/nn.Linear layers",
        )
    layers = pruned_layers(model, params.ignore, "global_magnitude")

    def prune_to(_event: int, target: float) -> str:
        prune_to_sparsity(model, target, layers)
        shown = target if params.schedule == "agp" else model_sparsity(model)
        return f"sparsity {shown:.3f}"

    run_schedule(model, params, ctx, prune_to, "global_magnitude")
    return model


def finalize_pruning(model: nn.Module) -> nn.Module:
    """Make all pruning masks permanent: plain ``weight`` parameters, no ``_orig``/``_mask``."""
    for module, hook in list(_pruning_hooks(model)):
        prune.remove(module, hook._tensor_name)
    return model


def mask_zeros(model: nn.Module) -> None:
    """Re-attach unstructured masks where weights are zero (after an earlier magnitude step)."""
    for _, module in prunable_layers(model):
        prune.custom_from_mask(module, "weight", module.weight.detach() != 0)


@contextmanager
def plain_weights(model: nn.Module) -> Iterator[None]:
    """Fold unstructured masks in for structural surgery (tracing, channel removal) and
    re-attach them afterwards where weights are zero, so earlier pruning stays pruned."""
    had_masks = prune.is_pruned(model)
    finalize_pruning(model)
    try:
        yield
    finally:
        if had_masks:
            mask_zeros(model)


# -- structured: L1 filter pruning with torch-pruning ----------------------------------------------


@register_compression("prune", "l1_filter", params=L1FilterParams, uses=schedule_data_use)
def l1_filter(model: nn.Module, params: L1FilterParams, ctx: CompressContext) -> nn.Module:
    """Remove the filters with the smallest L1 norm from every prunable layer group.

    With ``schedule: agp`` one torch-pruning ``MetaPruner`` steps through the AGP
    targets (each relative to the original widths) between ``ctx.train`` bursts.
    """
    plan = trace_plan(model, ctx.example_inputs, params.ignore, "l1_filter")
    if params.sparsity == 0:
        return model
    targets = params.targets()
    before, _ = count_parameters(model)
    remember_base(model)

    def schedule(final: float, steps: int) -> list[float]:
        # torch-pruning indexes this list by its step counter, which starts at 1
        return [0.0, *(min(final, t) for t in targets)][: steps + 1]

    def build(caps: dict[nn.Module, float]) -> tp.pruner.MetaPruner:
        return make_pruner(
            model,
            plan,
            tp.importance.MagnitudeImportance(p=1),
            ratio=params.sparsity,
            ratios=caps,
            round_to=params.round_to,
            iterative_steps=len(targets),
            scheduler=schedule,
            method="l1_filter",
        )

    with plain_weights(model), modes_kept(model), torch.enable_grad():
        pruner = build({})
        caps = capped_ratios(pruner, params.sparsity)
        if caps:
            pruner = build(caps)

    def prune_to(_event: int, target: float) -> str:
        with plain_weights(model), modes_kept(model), torch.enable_grad():
            pruner.step()
            after_surgery(model, "l1_filter")
        after, _ = count_parameters(model)
        shown = f"sparsity {target:.3f}, " if params.schedule == "agp" else ""
        return f"{shown}params {before} -> {after} ({after / before:.2f}x){note}"

    note = f" ({len(caps)} channel groups capped at 1 channel per group)" if caps else ""
    run_schedule(model, params, ctx, prune_to, "l1_filter")
    return model

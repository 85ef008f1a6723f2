"""Pruning methods: global unstructured L1 magnitude and structured L1 filter pruning.

``global_magnitude`` zeroes weights through ``torch.nn.utils.prune`` masks, which stay
active during fine-tuning; ``finalize_pruning`` makes them permanent before saving.
``l1_filter`` removes whole filters with torch-pruning (DepGraph), so the model gets
physically smaller; ``harness.checkpoint`` saves its new shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch_pruning as tp
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn
from torch.nn.utils import prune
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.ops.misc import FrozenBatchNorm2d

from harness.compress.registry import CompressContext, compression_method
from harness.compress.structure import remember_base
from harness.errors import HarnessError
from harness.registry import did_you_mean
from harness.spec._problems import SpecProblem

#: Layers whose ``weight`` both methods prune.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)

SPARSITY_HINT = "use a fraction such as 0.5 (the share of weights or filters to remove)"


# -- parameters ----------------------------------------------------------------------------


def _check_sparsity(value: Any) -> Any:
    if isinstance(value, bool):
        raise SpecProblem(f"sparsity must be a number, got {value!r}", hint=SPARSITY_HINT)
    return value


def _sparsity_in_range(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise SpecProblem(f"sparsity must be in [0, 1), got {value!r}", hint=SPARSITY_HINT)
    return value


class GlobalMagnitudeParams(BaseModel):
    """``sparsity``: share of Conv/Linear weights zeroed. ``schedule: agp`` prunes gradually
    (Zhu & Gupta): ``steps`` pruning events from ``initial_sparsity``, ``prune_every``
    optimizer steps of fine-tuning apart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sparsity: float
    schedule: Literal["oneshot", "agp"] = "oneshot"
    steps: int = Field(1, ge=1)
    initial_sparsity: float = 0.0
    prune_every: int = Field(20, ge=1)

    _sparsity_type = field_validator("sparsity", "initial_sparsity", mode="before")(_check_sparsity)
    _sparsity_range = field_validator("sparsity", "initial_sparsity")(_sparsity_in_range)

    @model_validator(mode="after")
    def _steps_need_a_schedule(self) -> GlobalMagnitudeParams:
        if self.steps > 1 and self.schedule == "oneshot":
            raise SpecProblem(
                f"steps: {self.steps} needs a gradual schedule, but schedule is 'oneshot'",
                hint="add schedule: agp, or remove steps",
                loc=("steps",),
            )
        if self.initial_sparsity > self.sparsity:
            raise SpecProblem(
                f"initial_sparsity {self.initial_sparsity} is above sparsity {self.sparsity}",
                hint="make initial_sparsity <= sparsity (AGP only ever adds pruning)",
                loc=("initial_sparsity",),
            )
        return self


def agp_sparsity(step: int, steps: int, initial: float, final: float) -> float:
    """Sparsity after pruning event ``step`` of ``steps`` (Zhu & Gupta 2017):
    s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ with (t − t0)/Δt = ``step``."""
    if not 0 <= step <= steps:
        raise ValueError(f"step must be in 0..{steps}, got {step}")
    return final + (initial - final) * (1.0 - step / steps) ** 3


class L1FilterParams(BaseModel):
    """``sparsity``: share of filters removed per layer group; ``ignore``: modules to keep."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sparsity: float
    ignore: tuple[str, ...] = ()
    round_to: int | None = Field(None, ge=1)

    _sparsity_type = field_validator("sparsity", mode="before")(_check_sparsity)
    _sparsity_range = field_validator("sparsity")(_sparsity_in_range)

    @field_validator("ignore", mode="before")
    @classmethod
    def _ignore_is_a_list(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise SpecProblem(
                f"ignore must be a list of module names, got {value!r}",
                hint="write ignore: [backbone.stem.0, ...] (names from model.named_modules())",
            )
        return value


# -- measuring -------------------------------------------------------------------------------


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Conv/Linear layer, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]


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


def prune_to_sparsity(model: nn.Module, sparsity: float) -> None:
    """Globally mask the smallest-|w| Conv/Linear weights until ``sparsity`` of them are masked.

    Existing masks are kept and count towards the target, so calling this with a
    growing target prunes gradually (the building block of schedules such as AGP).
    """
    layers = [m for _, m in prunable_layers(model)]
    total = sum(m.weight.numel() for m in layers)
    masked = sum(int((m.weight_mask == 0).sum()) for m in layers if hasattr(m, "weight_mask"))
    extra = round(sparsity * total) - masked
    if extra <= 0:
        return
    _refresh_masked_weights(model)
    prune.global_unstructured(
        [(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=extra
    )


@compression_method("prune", "global_magnitude", params=GlobalMagnitudeParams)
def global_magnitude(
    model: nn.Module, params: GlobalMagnitudeParams, ctx: CompressContext
) -> nn.Module:
    """Zero the globally smallest Conv/Linear weights; masks stay on for fine-tuning."""
    if not prunable_layers(model):
        raise HarnessError(
            f"global_magnitude found no Conv or Linear layers in {type(model).__name__}",
            hint="prune a model built from nn.Conv*/nn.Linear layers",
        )
    if params.schedule == "oneshot":
        prune_to_sparsity(model, params.sparsity)
        ctx.progress(f"global_magnitude: sparsity {model_sparsity(model):.3f}")
        return model
    if ctx.train is None:
        raise HarnessError(
            "schedule 'agp' interleaves pruning with training, but no training is available",
            field="prune.schedule",
            hint="give the suite training data (data.train), or use schedule: oneshot",
        )
    for step in range(params.steps + 1):
        target = agp_sparsity(step, params.steps, params.initial_sparsity, params.sparsity)
        prune_to_sparsity(model, target)
        ctx.progress(f"global_magnitude agp {step}/{params.steps}: sparsity {target:.3f}")
        if step < params.steps:
            ctx.train(model, params.prune_every)
    return model


def finalize_pruning(model: nn.Module) -> nn.Module:
    """Make all pruning masks permanent: plain ``weight`` parameters, no ``_orig``/``_mask``."""
    for module, hook in list(_pruning_hooks(model)):
        prune.remove(module, hook._tensor_name)
    return model


# -- structured: L1 filter pruning with torch-pruning ----------------------------------------------


@dataclass
class _TracePlan:
    """How torch-pruning traces a model: example input, forward function, layers to keep."""

    example: torch.Tensor
    forward_fn: Callable[[nn.Module, torch.Tensor], Any] | None
    keep: list[nn.Module]


class _FrozenBatchNormPruner(tp.pruner.function.BasePruningFunc):
    """Prunes torchvision's FrozenBatchNorm2d (its statistics are buffers, not parameters)."""

    def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
        drop = set(idxs)
        keep = [i for i in range(layer.weight.shape[0]) if i not in drop]
        for name in ("weight", "bias", "running_mean", "running_var"):
            layer._buffers[name] = layer._buffers[name][keep].clone()
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int:
        return int(layer.weight.shape[0])

    get_in_channels = get_out_channels


@contextmanager
def _modes_kept(model: nn.Module) -> Iterator[None]:
    """Restore every module's train/eval flag afterwards (tracing switches to eval)."""
    modes = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _detector_forward(model: nn.Module, images: torch.Tensor) -> Any:
    return model.head(list(model.backbone(images).values()))


def _detector_plan(model: FCOS | RetinaNet, images: torch.Tensor) -> _TracePlan:
    mean = torch.tensor(model.transform.image_mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(model.transform.image_std, dtype=images.dtype).view(1, -1, 1, 1)
    head = model.head
    keep = [head.classification_head.cls_logits, head.regression_head.bbox_reg]
    if isinstance(model, FCOS):
        keep.append(head.regression_head.bbox_ctrness)
    return _TracePlan((images - mean.to(images)) / std.to(images), _detector_forward, keep)


def _unsupported(model: nn.Module, why: str) -> HarnessError:
    return HarnessError(
        f"l1_filter supports torchvision FCOS/RetinaNet detectors and plain classifiers "
        f"(images -> logits); {type(model).__name__} {why}",
        hint="use prune: {method: global_magnitude, ...} for this model",
    )


def _classifier_plan(model: nn.Module, images: torch.Tensor) -> _TracePlan:
    try:
        with torch.no_grad(), _modes_kept(model):
            logits = model.eval()(images)
    except Exception as exc:
        raise _unsupported(model, f"failed on an image batch ({exc})") from exc
    if not (isinstance(logits, torch.Tensor) and logits.ndim == 2):
        raise _unsupported(model, "does not return a (batch, classes) tensor")
    outputs = [
        m
        for m in model.modules()
        if (isinstance(m, nn.Linear) and m.out_features == logits.shape[1])
        or (isinstance(m, nn.modules.conv._ConvNd) and m.out_channels == logits.shape[1])
    ]
    if not outputs:
        raise _unsupported(model, "has no final Linear/Conv layer producing its logits")
    return _TracePlan(images, None, [outputs[-1]])


def _trace_plan(
    model: nn.Module, example_inputs: torch.Tensor, ignore: tuple[str, ...]
) -> _TracePlan:
    device = next(model.parameters(), torch.empty(0)).device
    images = example_inputs[:2].to(device=device, dtype=torch.float32)
    if isinstance(model, (FCOS, RetinaNet)):
        plan = _detector_plan(model, images)
    elif isinstance(model, nn.modules.conv._ConvNd | nn.Linear) or not prunable_layers(model):
        raise _unsupported(model, "has no prunable inner layers")
    else:
        plan = _classifier_plan(model, images)
    plan.keep += _modules_named(model, ignore)
    # Inputs that require grad make every op part of the autograd graph torch-pruning
    # traces, even where parameters are frozen (requires_grad=False).
    plan.example = plan.example.detach().clone().requires_grad_(True)
    return plan


def _modules_named(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        known = [n for n in modules if n]
        raise HarnessError(
            f"l1_filter: no module named '{missing[0]}' in {type(model).__name__}",
            field="ignore",
            hint=f"{did_you_mean(missing[0], known)}use names from model.named_modules()",
        )
    return [modules[n] for n in names]


def _make_pruner(
    model: nn.Module, plan: _TracePlan, params: L1FilterParams, ratios: dict[nn.Module, float]
) -> tp.pruner.MetaPruner:
    return tp.pruner.MetaPruner(
        model,
        plan.example,
        importance=tp.importance.MagnitudeImportance(p=1),
        global_pruning=False,
        pruning_ratio=params.sparsity,
        pruning_ratio_dict=ratios or None,
        ignored_layers=plan.keep,
        round_to=params.round_to,
        forward_fn=plan.forward_fn,
        customized_pruners={FrozenBatchNorm2d: _FrozenBatchNormPruner()},
        # fresh dicts: torch-pruning's defaults are shared mutable objects
        in_channel_groups={},
        out_channel_groups={},
        num_heads={},
    )


def _channel_groups(pruner: tp.pruner.MetaPruner, group: Any) -> int:
    """How many equal channel groups (GroupNorm groups, grouped convs) a group is tied to."""
    found = [1]
    for dep, _ in group:
        is_out = pruner.DG.is_out_channel_pruning_fn(dep.handler)
        table = pruner.out_channel_groups if is_out else pruner.in_channel_groups
        found.append(table.get(dep.target.module, 1))
    return max(found)


def _capped_ratios(pruner: tp.pruner.MetaPruner, ratio: float) -> dict[nn.Module, float]:
    """Lower ratios for groups that ``ratio`` would empty (torch-pruning then skips them).

    torch-pruning keeps ``int(n * (1 - ratio))`` of the ``n`` channels in each channel
    group (e.g. 2 per GroupNorm group in the tiny FCOS head); where that is 0 the group
    is left unpruned. Capping keeps one channel per group instead.
    """
    caps: dict[nn.Module, float] = {}
    groups = pruner.DG.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    )
    for group in groups:
        root = group[0].dep.target.module
        per_group = pruner.DG.get_out_channels(root) // _channel_groups(pruner, group)
        if per_group > 1 and int(per_group * (1 - ratio)) < 1:
            caps[root] = 1 - 1.5 / per_group  # keeps int(1.5) = 1 channel per group
    return caps


def _mask_zeros(model: nn.Module) -> None:
    """Re-attach unstructured masks where weights are zero (after an earlier magnitude step)."""
    for _, module in prunable_layers(model):
        prune.custom_from_mask(module, "weight", module.weight.detach() != 0)


def _check_group_norms(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.GroupNorm) and module.num_channels % module.num_groups:
            raise HarnessError(
                f"l1_filter left GroupNorm '{name}' with {module.num_channels} channels, "
                f"not divisible by its {module.num_groups} groups",
                field="round_to",
                hint=f"set round_to: {module.num_groups} or add '{name}' to ignore",
            )


@compression_method("prune", "l1_filter", params=L1FilterParams)
def l1_filter(model: nn.Module, params: L1FilterParams, ctx: CompressContext) -> nn.Module:
    """Remove the filters with the smallest L1 norm from every prunable layer group."""
    plan = _trace_plan(model, ctx.example_inputs, params.ignore)
    if params.sparsity == 0:
        return model
    had_masks = prune.is_pruned(model)
    finalize_pruning(model)
    before, _ = count_parameters(model)
    remember_base(model)
    with _modes_kept(model), torch.enable_grad():
        pruner = _make_pruner(model, plan, params, {})
        caps = _capped_ratios(pruner, params.sparsity)
        if caps:
            pruner = _make_pruner(model, plan, params, caps)
        pruner.step()
    _check_group_norms(model)
    if had_masks:
        _mask_zeros(model)
    after, _ = count_parameters(model)
    note = f" ({len(caps)} channel groups capped at 1 channel per group)" if caps else ""
    ctx.progress(f"l1_filter: params {before} -> {after} ({after / before:.2f}x){note}")
    return model

"""Structured-pruning plumbing shared by the channel-removing methods (torch-pruning DepGraph).

``trace_plan`` says how to trace a model (torchvision FCOS/RetinaNet detectors through
backbone + head with the output convs kept; classifiers images → logits with the
logit layer kept); ``make_pruner`` builds a ``MetaPruner`` on it; ``channel_groups``
lists the coupled channel groups (``ChannelGroup``: one root layer, its slots, the
GroupNorm/grouped-conv channel groups); ``remove_slots`` physically removes chosen
slots. ``FrozenBatchNorm2d`` gets its own pruner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.ops.misc import FrozenBatchNorm2d

from robustness_harness.errors import HarnessError
from robustness_harness.registry import did_you_mean

#: Layers whose ``weight`` the pruning methods prune.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)
#: Per-channel normalisation layers (their output is a channel's last per-channel value).
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    FrozenBatchNorm2d,
)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Conv/Linear layer, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]


# -- tracing ----------------------------------------------------------------------------------


@dataclass
class TracePlan:
    """How torch-pruning traces a model: example input, forward function, layers to keep."""

    example: torch.Tensor
    forward_fn: Callable[[nn.Module, torch.Tensor], Any] | None
    keep: list[nn.Module]
    black: torch.Tensor  # an all-black batch as ``example`` is given (attribution baseline)

    def run(self, model: nn.Module, images: torch.Tensor | None = None) -> Any:
        """The traced forward pass on ``images`` (default: the example batch)."""
        x = self.example if images is None else images
        return model(x) if self.forward_fn is None else self.forward_fn(model, x)


class FrozenBatchNormPruner(tp.pruner.function.BasePruningFunc):
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
def modes_kept(model: nn.Module) -> Iterator[None]:
    """Restore every module's train/eval flag afterwards (tracing switches to eval)."""
    modes = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def detector_forward(model: nn.Module, images: torch.Tensor) -> Any:
    """Backbone + head of a torchvision one-stage detector on normalised images."""
    return model.head(list(model.backbone(images).values()))


def _detector_plan(model: FCOS | RetinaNet, images: torch.Tensor) -> TracePlan:
    mean = torch.tensor(model.transform.image_mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(model.transform.image_std, dtype=images.dtype).view(1, -1, 1, 1)
    head = model.head
    keep = [head.classification_head.cls_logits, head.regression_head.bbox_reg]
    if isinstance(model, FCOS):
        keep.append(head.regression_head.bbox_ctrness)
    mean, std = mean.to(images), std.to(images)
    return TracePlan((images - mean) / std, detector_forward, keep, (0 * images - mean) / std)


def _unsupported(model: nn.Module, why: str, method: str) -> HarnessError:
    return HarnessError(
        f"{method} supports torchvision FCOS/RetinaNet detectors and plain classifiers "
        f"(images -> logits); {type(model).__name__} {why}",
        hint="use prune: {method: global_magnitude, ...} for this model",
    )


def _classifier_plan(model: nn.Module, images: torch.Tensor, method: str) -> TracePlan:
    try:
        with torch.no_grad(), modes_kept(model):
            logits = model.eval()(images)
    except Exception as exc:
        raise _unsupported(model, f"failed on an image batch ({exc})", method) from exc
    if not (isinstance(logits, torch.Tensor) and logits.ndim == 2):
        raise _unsupported(model, "does not return a (batch, classes) tensor", method)
    outputs = [
        m
        for m in model.modules()
        if (isinstance(m, nn.Linear) and m.out_features == logits.shape[1])
        or (isinstance(m, nn.modules.conv._ConvNd) and m.out_channels == logits.shape[1])
    ]
    if not outputs:
        raise _unsupported(model, "has no final Linear/Conv layer producing its logits", method)
    return TracePlan(images, None, [outputs[-1]], torch.zeros_like(images))


def trace_plan(
    model: nn.Module,
    example_inputs: torch.Tensor,
    ignore: Sequence[str] = (),
    method: str = "",
    batch: int | None = 2,
) -> TracePlan:
    """How to trace ``model`` for ``method`` (named in errors) on the first ``batch``
    example images (None: all); ``ignore``: modules to keep."""
    device = next(model.parameters(), torch.empty(0)).device
    images = example_inputs[:batch].to(device=device, dtype=torch.float32)
    if isinstance(model, (FCOS, RetinaNet)):
        plan = _detector_plan(model, images)
    elif isinstance(model, PRUNABLE_TYPES) or not prunable_layers(model):
        raise _unsupported(model, "has no prunable inner layers", method)
    else:
        plan = _classifier_plan(model, images, method)
    plan.keep += modules_named(model, ignore, method)
    # Inputs that require grad make every op part of the autograd graph torch-pruning
    # traces, even where parameters are frozen (requires_grad=False).
    plan.example = plan.example.detach().clone().requires_grad_(True)
    return plan


def modules_named(model: nn.Module, names: Sequence[str], method: str) -> list[nn.Module]:
    """The modules called ``names`` in ``model``; a did-you-mean error for a missing one."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        known = [n for n in modules if n]
        raise HarnessError(
            f"{method}: no module named '{missing[0]}' in {type(model).__name__}",
            field="ignore",
            hint=f"{did_you_mean(missing[0], known)}use names from model.named_modules()",
        )
    return [modules[n] for n in names]


def make_pruner(
    model: nn.Module,
    plan: TracePlan,
    importance: tp.importance.Importance,
    *,
    ratio: float = 0.0,
    ratios: dict[nn.Module, float] | None = None,
    round_to: int | None = None,
    iterative_steps: int = 1,
    scheduler: Callable[[float, int], list[float]] | None = None,
) -> tp.pruner.MetaPruner:
    """A local (per-group) ``MetaPruner`` on ``plan`` with the harness's custom pruners."""
    extra = {"iterative_pruning_ratio_scheduler": scheduler} if scheduler else {}
    return tp.pruner.MetaPruner(
        model,
        plan.example,
        importance=importance,
        global_pruning=False,
        pruning_ratio=ratio,
        pruning_ratio_dict=ratios or None,
        ignored_layers=plan.keep,
        round_to=round_to,
        iterative_steps=iterative_steps,
        forward_fn=plan.forward_fn,
        customized_pruners={FrozenBatchNorm2d: FrozenBatchNormPruner()},
        # fresh dicts: torch-pruning's defaults are shared mutable objects
        in_channel_groups={},
        out_channel_groups={},
        num_heads={},
        **extra,
    )


# -- channel groups ----------------------------------------------------------------------------


def _tied_groups(pruner: tp.pruner.MetaPruner, group: Any) -> int:
    """How many equal channel groups (GroupNorm groups, grouped convs) a group is tied to."""
    found = [1]
    for dep, _ in group:
        is_out = pruner.DG.is_out_channel_pruning_fn(dep.handler)
        table = pruner.out_channel_groups if is_out else pruner.in_channel_groups
        found.append(table.get(dep.target.module, 1))
    return max(found)


@dataclass
class ChannelGroup:
    """Coupled channels that are removed together: ``slots`` slots, each one channel in
    each of ``tied`` equal channel groups (``tied`` > 1 under GroupNorm)."""

    group: Any  # torch_pruning Group over all channels of the root
    root: nn.Module
    handler: Callable[..., Any]
    channels: int
    tied: int

    @property
    def slots(self) -> int:
        return self.channels // self.tied

    def expand(self, slots: Sequence[int]) -> list[int]:
        """Channel indices (of the root) of ``slots``, in every tied channel group."""
        return sorted(s + g * self.slots for g in range(self.tied) for s in slots)


def channel_groups(pruner: tp.pruner.MetaPruner) -> list[ChannelGroup]:
    """Every prunable channel group of the traced model (ignored layers left out)."""
    groups = pruner.DG.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    )
    found = []
    for group in groups:
        dep = group[0].dep
        root = dep.target.module
        found.append(
            ChannelGroup(
                group,
                root,
                dep.handler,
                pruner.DG.get_out_channels(root),
                _tied_groups(pruner, group),
            )
        )
    return found


def capped_ratios(pruner: tp.pruner.MetaPruner, ratio: float) -> dict[nn.Module, float]:
    """Lower ratios for groups that ``ratio`` would empty (torch-pruning then skips them).

    torch-pruning keeps ``int(n * (1 - ratio))`` of the ``n`` channels in each channel
    group (e.g. 2 per GroupNorm group in the tiny FCOS head); where that is 0 the group
    is left unpruned. Capping keeps one channel per group instead.
    """
    caps: dict[nn.Module, float] = {}
    for found in channel_groups(pruner):
        if found.slots > 1 and int(found.slots * (1 - ratio)) < 1:
            caps[found.root] = 1 - 1.5 / found.slots  # keeps int(1.5) = 1 channel per group
    return caps


def remove_slots(
    pruner: tp.pruner.MetaPruner, chosen: Sequence[tuple[ChannelGroup, list[int]]]
) -> int:
    """Physically remove the chosen slots of each group; returns the channels removed.

    All choices index the model as it was when ``chosen`` was made: groups are disjoint,
    so removing one group's channels does not renumber another's.
    """
    removed = 0
    for found, slots in chosen:
        if not slots:
            continue
        idxs = found.expand(slots)
        group = pruner.DG.get_pruning_group(found.root, found.handler, idxs)
        if pruner.DG.check_pruning_group(group):
            group.prune()
            removed += len(idxs)
    return removed


def check_group_norms(model: nn.Module, method: str) -> None:
    """A ``HarnessError`` if pruning left a GroupNorm with channels not divisible by groups."""
    for name, module in model.named_modules():
        if isinstance(module, nn.GroupNorm) and module.num_channels % module.num_groups:
            raise HarnessError(
                f"{method} left GroupNorm '{name}' with {module.num_channels} channels, "
                f"not divisible by its {module.num_groups} groups",
                field="round_to",
                hint=f"set round_to: {module.num_groups} or add '{name}' to ignore",
            )

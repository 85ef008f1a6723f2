"""Structured-pruning plumbing shared by the channel-removing methods (torch-pruning DepGraph).

``trace_plan`` says how to trace a model (torchvision detectors through backbone + head,
or + RPN head for Faster R-CNN, with the output convs kept; classifiers images → logits
with the logit layer kept); ``make_pruner`` builds a ``MetaPruner`` on it; ``channel_groups``
lists the coupled channel groups (``ChannelGroup``: one root layer, its slots, the
GroupNorm/grouped-conv channel groups); ``remove_slots`` physically removes chosen
slots. ``FrozenBatchNorm2d`` gets its own pruner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.utils._pytree import tree_map
from torchvision.models.convnext import CNBlock
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.ssd import SSD
from torchvision.models.vision_transformer import Encoder, VisionTransformer
from torchvision.ops.misc import FrozenBatchNorm2d

from robustness_harness.compress.names import matching
from robustness_harness.compress.structure import sync_derived
from robustness_harness.errors import HarnessError

#: torchvision detection families the structured methods trace (``_detector_parts``).
DETECTOR_TYPES: tuple[type[nn.Module], ...] = (FCOS, RetinaNet, SSD, FasterRCNN)
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
    unwrapped: list[tuple[nn.Parameter, int]] = field(default_factory=list)
    """Parameters used outside a layer (e.g. SSD's L2-norm scale) and their channel dim."""
    num_heads: dict[nn.Module, int] = field(default_factory=dict)
    """Attention layers and their head count: each head loses the same channels."""

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


class LayerNormPruner(tp.pruner.function.BasePruningFunc):
    """Prunes a LayerNorm along its channel dimension: the last one of a channels-last
    ``[C]`` (torch-pruning's own rule) or the first one of a channels-first ``[C, H, W]``
    after a conv (torch-pruning would cut ``W`` there). ``dims``: layer → that index."""

    def __init__(self, dims: dict[nn.Module, int]) -> None:
        super().__init__()
        self.dims = dims

    def _dim(self, layer: nn.LayerNorm) -> int:
        return self.dims.get(layer, len(layer.normalized_shape) - 1)

    def prune_out_channels(self, layer: nn.LayerNorm, idxs: list[int]) -> nn.Module:
        dim, shape = self._dim(layer), list(layer.normalized_shape)
        drop = set(idxs)
        keep = [i for i in range(shape[dim]) if i not in drop]
        for name in ("weight", "bias"):
            if getattr(layer, name, None) is not None:
                param = getattr(layer, name)
                setattr(layer, name, self._prune_parameter_and_grad(param, keep, dim))
        shape[dim] = len(keep)
        layer.normalized_shape = tuple(shape)
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.LayerNorm) -> int:
        return int(layer.normalized_shape[self._dim(layer)])

    get_in_channels = get_out_channels


def layer_norm_dims(model: nn.Module, plan: TracePlan, method: str) -> dict[nn.Module, int]:
    """The channel index in ``normalized_shape`` of every multi-dimensional LayerNorm
    (``[C, H, W]`` on an ``(N, C, H, W)`` input: 0); a ``HarnessError`` for a LayerNorm
    that does not normalise over whole channels (e.g. ``[H, W]``)."""
    norms = {
        name: m
        for name, m in model.named_modules()
        if type(m) is nn.LayerNorm and len(m.normalized_shape) > 1
    }
    if not norms:
        return {}
    with torch.no_grad(), modes_kept(model):
        inputs = first_inputs(list(norms.values()), lambda: plan.run(model.eval()))
    dims = {}
    for name, norm in norms.items():
        shape = tuple(inputs[norm].shape) if norm in inputs else None
        if shape is not None and len(shape) != len(norm.normalized_shape) + 1:
            raise HarnessError(
                f"{method} cannot prune channels through LayerNorm '{name}': its "
                f"normalized_shape {list(norm.normalized_shape)} on input {list(shape)} "
                f"does not span whole channels",
                field="ignore",
                hint="normalise over [C, H, W] or channels-last [C], or use "
                "prune: {method: global_magnitude, ...} for this model",
            )
        dims[norm] = 0
    return dims


@contextmanager
def modes_kept(model: nn.Module) -> Iterator[None]:
    """Restore every module's train/eval flag afterwards (tracing switches to eval)."""
    modes = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


@contextmanager
def forward_hooks(
    modules: Iterable[nn.Module], hook: Callable[..., Any], *, pre: bool = False
) -> Iterator[None]:
    """``hook`` as a forward hook (a forward pre-hook with ``pre``) on each of
    ``modules`` while inside."""
    handles = [
        m.register_forward_pre_hook(hook) if pre else m.register_forward_hook(hook) for m in modules
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def first_inputs(
    modules: Sequence[nn.Module],
    run: Callable[[], Any],
    accept: Callable[[Any], bool] = lambda _value: True,
) -> dict[nn.Module, Any]:
    """The first positional input that ``accept`` takes of each of ``modules`` while
    ``run()`` runs, its tensors detached copies (a later in-place op cannot change them);
    a module that got none is absent."""
    seen: dict[nn.Module, Any] = {}

    def record(module: nn.Module, args: tuple[Any, ...]) -> None:
        if module not in seen and args and accept(args[0]):
            seen[module] = tree_map(
                lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t, args[0]
            )

    with forward_hooks(modules, record, pre=True):
        run()
    return seen


def detector_forward(model: nn.Module, images: torch.Tensor) -> Any:
    """Backbone + head of a torchvision one-stage detector (FCOS, RetinaNet, SSD,
    SSDlite) on normalised images."""
    return model.head(list(model.backbone(images).values()))


def rcnn_forward(model: nn.Module, images: torch.Tensor) -> Any:
    """Backbone (+ FPN), RPN head and RoI box head of a torchvision Faster R-CNN on
    normalised images (the box head on one whole-image box per image)."""
    features = model.backbone(images)
    rpn = model.rpn.head(list(features.values()))
    h, w = images.shape[-2:]
    boxes = [images.new_tensor([[0.0, 0.0, float(w), float(h)]]) for _ in range(len(images))]
    pooled = model.roi_heads.box_roi_pool(features, boxes, [(h, w)] * len(images))
    return rpn, model.roi_heads.box_predictor(model.roi_heads.box_head(pooled))


def _last_conv(module: nn.Module) -> nn.Module:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1]


def _detector_parts(model: nn.Module) -> tuple[Callable[[nn.Module, torch.Tensor], Any], list]:
    """The traced forward and the layers whose output width must stay, per family.

    One-stage heads keep their output convs. SSD keeps the last conv of each level's
    head, and SSD300-VGG16 the conv its L2-norm scale multiplies (an unwrapped
    parameter torch-pruning cannot resize). Faster R-CNN prunes backbone body, FPN
    inner channels, the RPN conv and the RoI box head's hidden layers (fc6/fc7); the
    FPN outputs keep their width (the RPN, the RoI pooling and any mask head read
    them), as do the RPN's and the box predictor's output layers.
    """
    if isinstance(model, FasterRCNN):
        fpn = getattr(model.backbone, "fpn", None)
        outputs = [_last_conv(block) for block in fpn.layer_blocks] if fpn is not None else []
        if fpn is None:  # a single feature map straight from the body: keep its last conv
            outputs = [_last_conv(model.backbone)]
        predictor = model.roi_heads.box_predictor
        rpn = [model.rpn.head.cls_logits, model.rpn.head.bbox_pred]
        return rcnn_forward, [*rpn, *outputs, predictor.cls_score, predictor.bbox_pred]
    head = model.head
    if isinstance(model, SSD):
        keep = [_last_conv(entry) for entry in head.classification_head.module_list]
        keep += [_last_conv(entry) for entry in head.regression_head.module_list]
        if _scale_weight(model) is not None:
            keep.append(_last_conv(model.backbone.features))
        return detector_forward, keep
    keep = [head.classification_head.cls_logits, head.regression_head.bbox_reg]
    if isinstance(model, FCOS):
        keep.append(head.regression_head.bbox_ctrness)
    return detector_forward, keep


def _scale_weight(model: nn.Module) -> nn.Parameter | None:
    """SSD300-VGG16's per-channel L2-norm scale, a parameter outside any layer."""
    scale = getattr(getattr(model, "backbone", None), "scale_weight", None)
    return scale if isinstance(scale, nn.Parameter) else None


def _detector_plan(model: nn.Module, images: torch.Tensor) -> TracePlan:
    mean = torch.tensor(model.transform.image_mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(model.transform.image_std, dtype=images.dtype).view(1, -1, 1, 1)
    forward, keep = _detector_parts(model)
    mean, std = mean.to(images), std.to(images)
    scale = _scale_weight(model)
    unwrapped = [(scale, 0)] if scale is not None else []
    return TracePlan((images - mean) / std, forward, keep, (0 * images - mean) / std, unwrapped)


def _unsupported(model: nn.Module, why: str, method: str) -> HarnessError:
    return HarnessError(
        f"{method} supports torchvision detectors (Faster R-CNN, RetinaNet, FCOS, SSD, "
        f"SSDlite) and plain classifiers "
        f"(images -> logits); {type(model).__name__} {why}",
        hint="use prune: {method: global_magnitude, ...} for this model",
    )


#: Parameters torchvision classifiers use outside a layer, and the dim of their channels.
UNWRAPPED: dict[type[nn.Module], tuple[tuple[str, int], ...]] = {
    VisionTransformer: (("class_token", 2),),  # (1, 1, hidden)
    Encoder: (("pos_embedding", 2),),  # (1, tokens, hidden)
    CNBlock: (("layer_scale", 0),),  # (channels, 1, 1)
}


def _unwrapped(model: nn.Module) -> list[tuple[nn.Parameter, int]]:
    """The ``UNWRAPPED`` parameters of ``model`` for torch-pruning (it would otherwise
    guess their channel dim, with a warning)."""
    found = []
    for module in model.modules():
        for name, dim in UNWRAPPED.get(type(module), ()):
            found.append((getattr(module, name), dim))
    return found


def _outputs(value: Any, batch: int) -> list[torch.Tensor] | None:
    """A model's output as a list of ``(batch, width, ...)`` tensors: one tensor, or a
    tuple/list of them (a cascade stage's class and box outputs); None otherwise."""
    values = list(value) if isinstance(value, tuple | list) else [value]
    if values and all(
        isinstance(v, torch.Tensor) and v.ndim >= 2 and v.shape[0] == batch for v in values
    ):
        return values
    return None


def _width(layer: nn.Module) -> int:
    return int(layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels)


def _classifier_plan(model: nn.Module, images: torch.Tensor, method: str) -> TracePlan:
    """Images → logits, or → a tuple of outputs: the last layer of each output's width
    (in registration order) keeps it."""
    try:
        with torch.no_grad(), modes_kept(model):
            value = model.eval()(images)
    except Exception as exc:
        raise _unsupported(model, f"failed on an image batch ({exc})", method) from exc
    outputs = _outputs(value, len(images))
    if outputs is None:
        raise _unsupported(
            model, "does not return a (batch, classes) tensor or a tuple of them", method
        )
    layers = [m for _, m in prunable_layers(model)]
    keep = []
    for output in outputs:
        same = [m for m in layers if _width(m) == output.shape[1]]
        if not same:
            raise _unsupported(
                model,
                f"has no final Linear/Conv layer producing its {output.shape[1]} output channels",
                method,
            )
        keep.append(same[-1])
    heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    return TracePlan(
        images, None, list(dict.fromkeys(keep)), torch.zeros_like(images), _unwrapped(model), heads
    )


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
    if isinstance(model, DETECTOR_TYPES):
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
    """The modules ``names`` (names or fnmatch patterns, ``robustness_harness.compress.names``)
    match in ``model``; a did-you-mean error for a pattern matching none."""
    return [model.get_submodule(n) for n in matching(model, names, field="ignore", method=method)]


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
    method: str = "structured pruning",
) -> tp.pruner.MetaPruner:
    """A local (per-group) ``MetaPruner`` on ``plan`` with the harness's custom pruners
    (``method`` is named in errors)."""
    extra = {"iterative_pruning_ratio_scheduler": scheduler} if scheduler else {}
    pruner = tp.pruner.MetaPruner(
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
        unwrapped_parameters=plan.unwrapped or None,
        customized_pruners={
            FrozenBatchNorm2d: FrozenBatchNormPruner(),
            nn.LayerNorm: LayerNormPruner(layer_norm_dims(model, plan, method)),
        },
        # fresh dicts: torch-pruning's defaults are shared mutable objects. Attention
        # layers go in as channel groups, not torch-pruning's ``num_heads`` (meant for
        # separate q/k/v Linears; on nn.MultiheadAttention it skips the embedding group):
        # each head then loses the same channels and head_dim stays whole.
        in_channel_groups=dict(plan.num_heads),
        out_channel_groups=dict(plan.num_heads),
        **extra,
    )
    check_layer_norm_coupling(pruner, method)
    return pruner


def check_layer_norm_coupling(pruner: tp.pruner.MetaPruner, method: str) -> None:
    """A ``HarnessError`` naming a LayerNorm whose values are not the channels torch-pruning
    couples it to (e.g. ``LayerNorm(W)`` on an (N, C, H, W) map; torch-pruning would cut
    it with channel indices): each LayerNorm in a prunable channel group must receive
    exactly its own channel indices, over all such groups."""
    names = {m: n for n, m in pruner.model.named_modules()}
    norms = {m for m in names if isinstance(m, nn.LayerNorm)}
    if not norms:
        return
    received: dict[nn.Module, set[int]] = {}
    sources: dict[nn.Module, nn.Module] = {}
    groups = pruner.DG.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    )
    for group in groups:
        for dep, idxs in group:
            if dep.target.module in norms:
                received.setdefault(dep.target.module, set()).update(int(i) for i in idxs)
                sources.setdefault(dep.target.module, group[0].dep.target.module)
    for norm, idxs in received.items():
        width = pruner.DG.get_out_channels(norm)
        if idxs != set(range(width)):
            root = sources[norm]
            raise HarnessError(
                f"{method} cannot prune LayerNorm '{names[norm]}' (normalized_shape "
                f"{list(norm.normalized_shape)}): torch-pruning couples it to its "
                f"{pruner.DG.get_out_channels(root)} channels of '{names[root]}', "
                f"which it does not normalise",
                field="ignore",
                hint=f"add '{names[root]}' to ignore (its width is kept), or use "
                "prune: {method: global_magnitude, ...} for this model",
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


def after_surgery(model: nn.Module, method: str) -> None:
    """After channel removal: update widths kept as plain attributes (``sync_derived``:
    ViT ``hidden_dim``, attention ``head_dim``) and check GroupNorms."""
    sync_derived(model)
    check_group_norms(model, method)


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

"""The layer sizes of a (possibly structurally pruned) model, as JSON, and their re-application.

A model pruned by ``l1_filter`` has narrower layers than a freshly built one, so its
state dict does not load into the base architecture. ``structure_of`` records the
structural attributes of every layer that pruning can change, and the shapes of the
tensors outside such layers (a ViT's class token and position embedding, ConvNeXt's layer
scales, MultiheadAttention's input projection); ``apply_structure`` resizes a fresh model
to them (empty tensors of the recorded sizes) so that ``load_state_dict(strict=True)``
works without ever pickling a module. ``sync_derived`` updates the attributes torchvision
derives from those sizes (ViT ``hidden_dim``, attention ``embed_dim``/``head_dim``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchvision.models import VisionTransformer
from torchvision.ops.misc import FrozenBatchNorm2d

from robustness_harness.errors import CheckpointError

STRUCTURE_FORMAT = 1
BASE_ATTR = "_harness_base_structure"
ARCH_HINT = (
    "check `model:` in the suite (name, factory and kwargs such as num_classes): "
    "it must build the architecture the checkpoint was saved from"
)

REBUILD_HINT = "delete the cache entry or run with --harness-rebuild"

Shape = tuple[int, ...]

#: Layers whose tensor shapes follow from their recorded sizes (``_expected_shapes``).
IMPLIED_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    FrozenBatchNorm2d,
    nn.PReLU,
)
MHA_WIDTHS = ("embed_dim", "kdim", "vdim", "num_heads", "head_dim")


# -- recording ------------------------------------------------------------------------------


def _attributes(module: nn.Module) -> dict[str, Any] | None:
    """The structural attributes of ``module``, or None for a layer pruning cannot resize."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return {
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "groups": module.groups,
        }
    if isinstance(module, nn.Linear):
        return {"in_features": module.in_features, "out_features": module.out_features}
    if isinstance(module, nn.modules.batchnorm._NormBase):  # BatchNorm*, InstanceNorm*
        return {"num_features": module.num_features}
    if isinstance(module, nn.GroupNorm):
        return {"num_groups": module.num_groups, "num_channels": module.num_channels}
    if isinstance(module, nn.LayerNorm):
        return {"normalized_shape": list(module.normalized_shape)}
    if isinstance(module, FrozenBatchNorm2d):
        return {"num_features": int(module.weight.shape[0])}
    if isinstance(module, nn.PReLU):  # one slope per channel, or one shared slope
        return {"num_parameters": module.num_parameters}
    if isinstance(module, nn.MultiheadAttention):
        return {key: getattr(module, key) for key in MHA_WIDTHS}
    if isinstance(module, VisionTransformer):
        return {"hidden_dim": module.hidden_dim}
    return None


def _tensor_shapes(module: nn.Module) -> dict[str, list[int]]:
    """Shapes of ``module``'s own (not its children's) parameters and buffers."""
    tensors = {**module._parameters, **module._buffers}
    return {name: list(t.shape) for name, t in tensors.items() if t is not None}


def _modules_of(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per module: its type and sizes; for a module whose tensor shapes its sizes do not
    imply (attention, ViT tokens, ConvNeXt layer scales), ``tensors``: their shapes."""
    modules = {}
    for name, module in model.named_modules():
        attributes = _attributes(module)
        tensors = _tensor_shapes(module) if not isinstance(module, IMPLIED_TYPES) else {}
        if attributes is not None or tensors:
            modules[name] = {"type": type(module).__name__, **(attributes or {})}
        if tensors:
            modules[name]["tensors"] = tensors
    return modules


def sync_derived(model: nn.Module) -> None:
    """Update the attributes torchvision derives from layer sizes at construction and
    reads in ``forward``, after channels were removed or a structure was applied."""
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            embed = module.out_proj.in_features
            module.embed_dim, module.head_dim = embed, embed // module.num_heads
            if module._qkv_same_embed_dim:
                module.kdim = module.vdim = embed
        elif isinstance(module, VisionTransformer):
            module.hidden_dim = int(module.class_token.shape[-1])


def remember_base(model: nn.Module) -> None:
    """Record ``model``'s current layer sizes as its base, before a method resizes layers.

    Kept as a plain attribute (it survives ``copy.deepcopy``), so the checkpoint can
    tell layers that pruning resized from a base model built with other sizes.
    """
    if BASE_ATTR not in model.__dict__:
        model.__dict__[BASE_ATTR] = _modules_of(model)


def structure_of(model: nn.Module) -> dict[str, Any]:
    """JSON-able layer sizes of ``model``.

    ``{"format", "model": class name, "modules": {name: {"type", sizes..., "tensors"}},
    "base"}`` where ``tensors`` (shapes) is there for a module whose sizes do not imply
    its tensors' shapes, and ``base`` holds the sizes before structural pruning (None
    when unchanged).
    """
    modules = _modules_of(model)
    base = model.__dict__.get(BASE_ATTR)
    return {
        "format": STRUCTURE_FORMAT,
        "model": type(model).__name__,
        "modules": modules,
        "base": base if base is not None and base != modules else None,
    }


# -- re-applying ----------------------------------------------------------------------------


def _expected_shapes(module: nn.Module) -> dict[str, Shape]:
    """Parameter/buffer shapes implied by ``module``'s (possibly updated) attributes."""
    if isinstance(module, nn.modules.conv._ConvNd):
        cin, cout, groups = module.in_channels, module.out_channels, module.groups
        first = (cin, cout // groups) if module.transposed else (cout, cin // groups)
        return {"weight": (*first, *module.kernel_size), "bias": (cout,)}
    if isinstance(module, nn.Linear):
        return {"weight": (module.out_features, module.in_features), "bias": (module.out_features,)}
    if isinstance(module, nn.LayerNorm):
        shape = tuple(module.normalized_shape)
        return {"weight": shape, "bias": shape}
    if isinstance(module, nn.PReLU):
        return {"weight": (module.num_parameters,)}
    if isinstance(module, nn.GroupNorm):
        channels: Shape = (module.num_channels,)
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        channels = (module.num_features,)
    else:  # FrozenBatchNorm2d
        channels = (int(module.weight.shape[0]),)
    names = ("weight", "bias", "running_mean", "running_var")
    return dict.fromkeys(names, channels)


def _set_attributes(module: nn.Module, saved: dict[str, Any], name: str) -> None:
    """Copy the recorded attributes onto ``module`` after checking they are consistent."""
    try:
        values = {key: saved[key] for key in _attributes(module) or {}}
    except KeyError as exc:
        raise CheckpointError(
            f"structure of module '{name}' lacks {exc}", hint=REBUILD_HINT
        ) from None
    for key, value in values.items():
        if key == "normalized_shape":
            module.normalized_shape = tuple(int(v) for v in value)
        elif key == "num_features" and isinstance(module, FrozenBatchNorm2d):
            _resize_all(module, dict.fromkeys(_expected_shapes(module), (int(value),)))
        else:
            setattr(module, key, int(value))
    _check_divisible(module, name)


def _recorded_shapes(saved: dict[str, Any], name: str) -> dict[str, Shape]:
    """The ``tensors`` record of a module whose sizes do not imply its tensor shapes."""
    try:
        return {
            key: tuple(int(n) for n in shape) for key, shape in saved.get("tensors", {}).items()
        }
    except (AttributeError, TypeError, ValueError):
        raise CheckpointError(
            f"structure of module '{name}' has malformed tensor shapes", hint=REBUILD_HINT
        ) from None


def _check_divisible(module: nn.Module, name: str) -> None:
    if isinstance(module, nn.modules.conv._ConvNd):
        ok = module.in_channels % module.groups == 0 and module.out_channels % module.groups == 0
    elif isinstance(module, nn.GroupNorm):
        ok = module.num_channels % module.num_groups == 0
    else:
        return
    if not ok:
        raise CheckpointError(
            f"structure of module '{name}' has channels not divisible by its groups",
            hint=f"the checkpoint is damaged; {REBUILD_HINT}",
        )


def _resize_all(module: nn.Module, shapes: dict[str, Shape]) -> None:
    """Replace parameters/buffers whose shape differs with uninitialised tensors of ``shapes``."""
    for tname, shape in shapes.items():
        if tname in module._parameters and module._parameters[tname] is not None:
            old = module._parameters[tname]
            if tuple(old.shape) != shape:
                new = torch.empty(shape, dtype=old.dtype, device=old.device)
                module._parameters[tname] = nn.Parameter(new, requires_grad=old.requires_grad)
        elif tname in module._buffers and module._buffers[tname] is not None:
            old = module._buffers[tname]
            if tuple(old.shape) != shape:
                module._buffers[tname] = torch.empty(shape, dtype=old.dtype, device=old.device)


def _first_difference(saved: dict[str, Any], here: dict[str, Any]) -> str | None:
    """The first layer that differs between two ``_modules_of`` records, in words."""
    for name, layer in saved.items():
        other = here.get(name)
        kind = layer.get("type") if isinstance(layer, dict) else None
        if other is None:
            return f"module '{name}' is {kind} in the checkpoint but missing here"
        if kind != other["type"]:
            return f"module '{name}' is {kind} in the checkpoint but {other['type']} here"
        for key, value in other.items():
            if layer.get(key) != value:
                return (
                    f"module '{name}' has {key} {layer.get(key)} in the checkpoint but {value} here"
                )
    # checkpoints from before ``tensors`` records lack them; the state dict check remains
    extra = [name for name in here if name not in saved and "tensors" not in here[name]]
    if extra:
        return f"module '{extra[0]}' ({here[extra[0]]['type']}) is not in the checkpoint"
    return None


def _architecture_error(detail: str, saved_model: str, here: nn.Module) -> CheckpointError:
    if saved_model != type(here).__name__:
        detail += f" (a {saved_model} was saved, the builder gives a {type(here).__name__})"
    return CheckpointError(
        f"checkpoint was saved from another architecture: {detail}", hint=ARCH_HINT
    )


def apply_structure(
    model: nn.Module, structure: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]
) -> None:
    """Resize a freshly built ``model`` in place to ``structure``; check ``state_dict`` fits.

    The fresh model must equal the checkpoint's base (its layers before structural
    pruning); otherwise, or when keys or shapes of ``state_dict`` do not match the
    resized model, this raises ``CheckpointError`` naming the first difference.
    """
    if not isinstance(structure, Mapping) or structure.get("format") != STRUCTURE_FORMAT:
        raise CheckpointError(
            f"unknown structure format (expected format {STRUCTURE_FORMAT})",
            hint=REBUILD_HINT,
        )
    saved_model = str(structure.get("model", "?"))
    modules = dict(structure.get("modules") or {})
    base = dict(structure.get("base") or modules)
    difference = _first_difference(base, _modules_of(model))
    if difference:
        raise _architecture_error(difference, saved_model, model)
    here = dict(model.named_modules())
    for name, saved in modules.items():
        if name not in here or type(here[name]).__name__ != saved.get("type"):
            raise CheckpointError(
                f"structure of module '{name}' does not match its base", hint=REBUILD_HINT
            )
        module = here[name]
        _set_attributes(module, saved, name)
        implied = isinstance(module, IMPLIED_TYPES)
        _resize_all(module, _expected_shapes(module) if implied else _recorded_shapes(saved, name))
    problem = state_dict_mismatch(model, state_dict)
    if problem:
        raise _architecture_error(problem, saved_model, model)
    if structure.get("base"):
        model.__dict__[BASE_ATTR] = base


def _listed(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def state_dict_mismatch(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """A one-line account of missing/unexpected keys and shape mismatches, or None if it fits."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} saved {list(state_dict[k].shape)}, model {list(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing keys {_listed(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_listed(unexpected)}")
    if shapes:
        parts.append(f"shape mismatch {_listed(shapes, 2)}")
    return "; ".join(parts) or None

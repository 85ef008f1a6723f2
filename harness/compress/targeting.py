"""``modules:`` on a compress step: compress named parts of a model, not the whole.

A cascade (MTCNN's ``pnet``, ``rnet``, ``onet``) or a custom detector's backbone is
pruned by applying the method to each selected sub-module as if it were the model, and
quantized by one quantize call that is told the parts (``PARTS``: each becomes a quantized
graph inside the float model, calibrated through the whole model's forward):
``modules`` holds qualified module names or ``fnmatch`` patterns (``backbone.*``); the
outermost matches are taken. Each part's example inputs are recorded from one real batch
(a forward pre-hook during one forward pass of the whole model on the example images, the
way its task calls it), and the compressed part replaces the original in its parent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from robustness_harness.compress.base import CompressContext, MethodInfo
from robustness_harness.compress.graph import first_inputs, modes_kept
from robustness_harness.compress.names import matching, outermost, wrapper_prefix
from robustness_harness.compress.structure import remember_base
from robustness_harness.errors import HarnessError
from robustness_harness.inference.input_contract import inner_model

FORWARD = "forward"
"""``CompressContext.extras`` key: ``forward(model, images)`` runs the model on an image
batch the way its task calls it (detectors on a list of images)."""
PARTS = "parts"
"""``CompressContext.extras`` key for a quantize method: ``{name in the model: example
input}`` of each part to quantize (absent: the whole model)."""


def select_modules(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Qualified names of the outermost modules matching any of ``patterns``."""
    return outermost(matching(model, patterns, field="modules"))


def record_inputs(
    model: nn.Module,
    parts: Sequence[nn.Module],
    names: Sequence[str],
    run: Callable[[nn.Module], Any],
) -> dict[str, torch.Tensor]:
    """The first tensor input of each of ``parts`` (named ``names``) during one
    ``run(model)``."""
    with torch.no_grad(), modes_kept(model):
        model.eval()
        first = first_inputs(parts, lambda: run(model), lambda x: isinstance(x, torch.Tensor))
    seen = {name: first[part] for part, name in zip(parts, names, strict=True) if part in first}
    missing = [n for n in names if n not in seen]
    if missing:
        raise HarnessError(
            f"module {missing[0]!r} got no tensor input when the model ran on the example images",
            field="modules",
            hint="target modules that the forward pass calls with a tensor",
        )
    return seen


def apply_to_modules(
    info: MethodInfo, model: nn.Module, params: Any, ctx: CompressContext, patterns: Sequence[str]
) -> nn.Module:
    """Method ``info`` on each sub-module ``patterns`` select (``model`` itself without
    patterns), each with its own recorded example inputs: a prune method's results replace
    the originals; a quantize method gets all parts at once (``PARTS``)."""
    if not patterns:
        return info.apply(model, params, ctx)
    forward = ctx.extras.get(FORWARD)
    if forward is None:
        raise HarnessError(
            "modules: needs the model's task to record example inputs", field="modules"
        )
    remember_base(model)  # the checkpoint records the sizes before any part shrank
    root = inner_model(model)  # names are the user's, without the model.input wrapper
    names = select_modules(root, patterns)
    inputs = record_inputs(
        model,
        [root.get_submodule(n) for n in names],
        names,
        lambda m: forward(m, ctx.example_inputs),
    )
    if info.kind == "quantize":
        parts = {wrapper_prefix(model) + name: inputs[name] for name in names}
        return info.apply(model, params, replace(ctx, extras={**ctx.extras, PARTS: parts}))
    for name in names:
        part = info.apply(
            root.get_submodule(name), params, replace(ctx, example_inputs=inputs[name])
        )
        root.set_submodule(name, part)
    return model


def task_forward(task: str) -> Callable[[nn.Module, torch.Tensor], Any]:
    """``forward(model, images)`` as ``task`` calls a model: a detector on a list of
    images, a classifier on the batch."""
    if task == "detection":
        return lambda model, images: model(list(images))
    return lambda model, images: model(images)

"""``modules:`` on a prune step: compress named parts of a model, not the whole.

A cascade (MTCNN's ``pnet``, ``rnet``, ``onet``) or a custom detector's backbone is
compressed by applying the method to each selected sub-module as if it were the model:
``modules`` holds qualified module names or ``fnmatch`` patterns (``backbone.*``); the
outermost matches are taken. Each part's example inputs are recorded from one real batch
(a forward pre-hook during one forward pass of the whole model on the example images, the
way its task calls it), and the compressed part replaces the original in its parent.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from robustness_harness.compress.graph import first_inputs, modes_kept
from robustness_harness.compress.registry import CompressContext, CompressFn
from robustness_harness.compress.structure import remember_base
from robustness_harness.errors import HarnessError
from robustness_harness.input_contract import inner_model

FORWARD = "forward"
"""``CompressContext.extras`` key: ``forward(model)`` runs the model on the example
batch the way its task calls it (detectors on a list of images)."""


def select_modules(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Qualified names of the outermost modules matching any of ``patterns``."""
    names = [name for name, _ in model.named_modules() if name]
    chosen: list[str] = []
    for name in names:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns) and not any(
            name.startswith(c + ".") for c in chosen
        ):
            chosen.append(name)
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched:
        top = [name for name, _ in model.named_children()]
        raise HarnessError(
            f"no module of {type(model).__name__} matches {unmatched[0]!r}",
            field="modules",
            hint=f"use names from model.named_modules(), e.g. {', '.join(top[:6])}",
        )
    return chosen


def record_inputs(
    model: nn.Module,
    parts: Sequence[nn.Module],
    names: Sequence[str],
    forward: Callable[[nn.Module], Any],
) -> dict[str, torch.Tensor]:
    """The first tensor input of each of ``parts`` (named ``names``) during one
    ``forward(model)``."""
    with torch.no_grad(), modes_kept(model):
        model.eval()
        first = first_inputs(parts, lambda: forward(model), lambda x: isinstance(x, torch.Tensor))
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
    fn: CompressFn, model: nn.Module, params: Any, ctx: CompressContext, patterns: Sequence[str]
) -> nn.Module:
    """``fn`` on each sub-module ``patterns`` select (``model`` itself without patterns),
    each with its own recorded example inputs; the results replace the originals."""
    if not patterns:
        return fn(model, params, ctx)
    forward = ctx.extras.get(FORWARD)
    if forward is None:
        raise HarnessError(
            "modules: needs the model's task to record example inputs", field="modules"
        )
    remember_base(model)  # the checkpoint records the sizes before any part shrank
    root = inner_model(model)  # names are the user's, without the model.input wrapper
    names = select_modules(root, patterns)
    inputs = record_inputs(model, [root.get_submodule(n) for n in names], names, forward)
    for name in names:
        part = fn(root.get_submodule(name), params, replace(ctx, example_inputs=inputs[name]))
        parent, _, child = name.rpartition(".")
        setattr(root.get_submodule(parent) if parent else root, child, part)
    return model


def example_forward(task: str, example: torch.Tensor) -> Callable[[nn.Module], Any]:
    """``forward(model)`` on ``example`` as ``task`` calls a model: a detector on a list
    of images, a classifier on the batch."""
    if task == "detection":
        return lambda model: model(list(example))
    return lambda model: model(example)

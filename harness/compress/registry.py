"""The compression-method registry: one function ``(model, params, ctx) -> model`` each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel
from torch import nn

from robustness_harness.registry import Registry

StepKind = Literal["prune", "quantize"]


@dataclass
class CompressContext:
    """What a compression method may use besides the model and its parameters.

    ``example_inputs``: a batch of real images (B, 3, H, W) in [0, 1] for tracing and
    calibration; ``seed``: the variant's seed; ``progress``: one-line status output;
    ``train``: optional callable ``train(model, steps, regularizer=None, **overrides)``
    that fine-tunes in place with the variant's recipe (``overrides``: ``TrainRecipe``
    fields, e.g. ``lr``), adding ``regularizer(model)`` to
    the loss when given (for schedules that interleave pruning and training, sparsity
    penalties and learned masks).
    """

    example_inputs: torch.Tensor
    seed: int = 0
    progress: Callable[[str], None] = print
    train: Callable[..., None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


CompressFn = Callable[[nn.Module, Any, CompressContext], nn.Module]


@dataclass(frozen=True)
class MethodInfo:
    """A registered compression method: its step kind, function and parameter model."""

    kind: StepKind
    name: str
    fn: CompressFn
    params: type[BaseModel]


METHODS: Registry[MethodInfo] = Registry(
    "compression method", group="robustness_harness.compression"
)


def compression_method(
    kind: StepKind, name: str, params: type[BaseModel]
) -> Callable[[CompressFn], CompressFn]:
    """Register ``fn(model, params, ctx) -> model`` as ``{kind: {method: name, ...}}``."""

    def wrap(fn: CompressFn) -> CompressFn:
        METHODS.register(name, MethodInfo(kind=kind, name=name, fn=fn, params=params))
        return fn

    return wrap

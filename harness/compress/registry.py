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
DataUse = Literal["train", "calibration"]
"""Which suite data a step reads besides example inputs: ``train`` (it runs training
steps through ``ctx.train``) or ``calibration`` (it calibrates on ``calibration_images``)."""


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
    uses: Callable[[Any], DataUse | None] = lambda _params: None

    def data_use(self, params: Any) -> DataUse | None:
        """The data this step with ``params`` reads (None: only the example inputs)."""
        return self.uses(params)


METHODS: Registry[MethodInfo] = Registry(
    "compression method", group="robustness_harness.compression"
)


def compression_method(
    kind: StepKind,
    name: str,
    params: type[BaseModel],
    uses: DataUse | Callable[[Any], DataUse | None] | None = None,
) -> Callable[[CompressFn], CompressFn]:
    """Register ``fn(model, params, ctx) -> model`` as ``{kind: {method: name, ...}}``.

    ``uses`` says which data the step reads: ``"train"``, ``"calibration"``, or a function
    of the step's params giving one of them or None (suites are checked for that data at
    load time, and the checkpoint key covers it).
    """
    use_of = uses if callable(uses) else (lambda _params: uses)

    def wrap(fn: CompressFn) -> CompressFn:
        info = MethodInfo(kind=kind, name=name, fn=fn, params=params, uses=use_of)
        METHODS.register(name, info)
        return fn

    return wrap

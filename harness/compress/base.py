"""What a compression method is: one function ``(model, params, ctx) -> model``
(``CompressFn``), the ``CompressContext`` it receives and ``MethodInfo`` (a registered one).

Methods register with ``robustness_harness.registry.register_compression`` (alias
``compression_method``) into ``METHODS``; importing ``robustness_harness.compress``
registers the built-in ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel
from torch import nn

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

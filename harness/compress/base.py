"""What a compression method is: one function ``(model, ctx, *, <parameters>) -> model``
whose keyword-only parameters are the step's (as a metric's are the check's), or
``(model, params, ctx) -> model`` with a pydantic ``params`` model when its parameters need
cross-field validation (``CompressFn``); the ``CompressContext`` it receives and
``MethodInfo`` (a registered one).

Methods register with ``robustness_harness.registry.register_compression`` (alias
``compression_method``) into ``METHODS``; importing ``robustness_harness.compress``
registers the built-in ones."""

from __future__ import annotations

import inspect
import typing
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
    keywords: bool = False
    """The function takes its parameters as keyword arguments (``params`` was built from
    its keyword-only parameters)."""

    def data_use(self, params: Any) -> DataUse | None:
        """The data this step with ``params`` reads (None: only the example inputs)."""
        return self.uses(params)

    def apply(self, model: nn.Module, params: BaseModel, ctx: CompressContext) -> nn.Module:
        """The method on ``model`` with the step's validated ``params``."""
        if self.keywords:
            return self.fn(model, ctx, **dict(params))  # type: ignore[call-arg]
        return self.fn(model, params, ctx)


def keyword_params_model(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of ``fn``'s keyword-only parameters (their type hints and
    defaults; unknown keys refused): the parameters of a method that declares them so."""
    from pydantic import ConfigDict, create_model

    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (hints.get(param.name, Any), default)
    model_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
    return create_model(f"{model_name}Params", __config__=ConfigDict(extra="forbid"), **fields)

"""Shared pruning parameters and the AGP schedule (Zhu & Gupta 2017).

``SparsityParams`` holds the ``sparsity`` key with its checks; ``ScheduleParams``
adds ``schedule: oneshot | agp`` with ``steps``, ``initial_sparsity`` and
``prune_every``. ``run_schedule`` interleaves pruning events with ``ctx.train``
bursts for any method that can prune to a target sparsity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from torch import nn

from robustness_harness.compress.base import CompressContext, DataUse
from robustness_harness.compress.names import IgnoreParams
from robustness_harness.errors import HarnessError
from robustness_harness.suite.problems import SpecProblem

SPARSITY_HINT = "use a fraction such as 0.5 (the share of weights or filters to remove)"


def check_not_bool(value: Any, name: str = "sparsity", hint: str = SPARSITY_HINT) -> Any:
    """Reject YAML booleans where a number is expected (pydantic would read them as 0/1)."""
    if isinstance(value, bool):
        raise SpecProblem(f"{name} must be a number, got {value!r}", hint=hint)
    return value


def _sparsity_type(value: Any) -> Any:
    return check_not_bool(value)


def _sparsity_in_range(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise SpecProblem(f"sparsity must be in [0, 1), got {value!r}", hint=SPARSITY_HINT)
    return value


class SparsityParams(IgnoreParams):
    """``sparsity``: the share in [0, 1) that a method removes (its unit is the method's);
    ``ignore``: modules it leaves as they are."""

    sparsity: float

    _sparsity_type = field_validator("sparsity", mode="before")(_sparsity_type)
    _sparsity_range = field_validator("sparsity")(_sparsity_in_range)


class ScheduleParams(SparsityParams):
    """``schedule: agp`` prunes gradually: ``steps`` pruning events from
    ``initial_sparsity`` to ``sparsity``, ``prune_every`` optimizer steps apart."""

    schedule: Literal["oneshot", "agp"] = "oneshot"
    steps: int = Field(1, ge=1)
    initial_sparsity: float = 0.0
    prune_every: int = Field(20, ge=1)

    _initial_type = field_validator("initial_sparsity", mode="before")(_sparsity_type)
    _initial_range = field_validator("initial_sparsity")(_sparsity_in_range)

    @model_validator(mode="after")
    def _steps_need_a_schedule(self) -> ScheduleParams:
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

    def targets(self) -> list[float]:
        """The sparsity after each pruning event: one for oneshot, ``steps + 1`` for AGP."""
        if self.schedule == "oneshot":
            return [self.sparsity]
        return [
            agp_sparsity(k, self.steps, self.initial_sparsity, self.sparsity)
            for k in range(self.steps + 1)
        ]


def schedule_data_use(params: ScheduleParams) -> DataUse | None:
    """``"train"`` for ``schedule: agp`` (it trains between pruning events), else None."""
    return "train" if params.schedule == "agp" else None


def agp_sparsity(step: int, steps: int, initial: float, final: float) -> float:
    """Sparsity after pruning event ``step`` of ``steps`` (Zhu & Gupta 2017):
    s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ with (t − t0)/Δt = ``step``."""
    if not 0 <= step <= steps:
        raise ValueError(f"step must be in 0..{steps}, got {step}")
    return final + (initial - final) * (1.0 - step / steps) ** 3


def require_training(ctx: CompressContext, why: str, field: str, fallback: str) -> Callable:
    """``ctx.train``, or a ``HarnessError`` saying that ``why`` needs training data."""
    if ctx.train is None:
        raise HarnessError(
            f"{why}, but no training is available",
            field=field,
            hint=f"give the suite training data (data.train), or {fallback}",
        )
    return ctx.train


def run_schedule(
    model: nn.Module,
    params: ScheduleParams,
    ctx: CompressContext,
    prune_to: Callable[[int, float], str],
    label: str,
) -> None:
    """Prune to each of ``params.targets()`` in turn, training ``prune_every`` steps between.

    ``prune_to(event, target)`` prunes ``model`` to ``target`` and returns a short status
    for the progress line ``"<label> agp k/n: ..."``.
    """
    targets = params.targets()
    if params.schedule == "oneshot":
        ctx.progress(f"{label}: {prune_to(0, targets[0])}")
        return
    train = require_training(
        ctx,
        "schedule 'agp' interleaves pruning with training",
        "prune.schedule",
        "use schedule: oneshot",
    )
    for event, target in enumerate(targets):
        status = prune_to(event, target)
        ctx.progress(f"{label} agp {event}/{params.steps}: {status}")
        if event < params.steps:
            train(model, params.prune_every)

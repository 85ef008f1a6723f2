"""Paired latency (baseline-relative gates): candidate and baseline timed in alternating
ABBA rounds on one simulated machine whose load changes over time.

The machine is a fake clock: a model "costs" a fixed number of ms, stretched by the load
at the moment the call starts; nothing real is timed. Timing each model on its own (the
old way: candidate, then baseline) gets the ratio wrong under a load spike or drift; the
paired measurement gets the true ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from robustness_harness.metrics import METRICS
from robustness_harness.metrics import latency as latency_module
from robustness_harness.metrics.context import ModelContext
from robustness_harness.metrics.latency import (
    latency_ms,
    latency_ms_paired,
    ratio_spread,
    round_sizes,
    time_paired_calls,
)

CANDIDATE_MS, BASELINE_MS = 5.0, 10.0
TRUE_RATIO = CANDIDATE_MS / BASELINE_MS
SPIKE_MS = 555.0
"""3x load until then: longer than the candidate's own measurement (35 calls x 3 x 5 ms),
and it ends inside the third round of a paired measurement."""


@dataclass
class Machine:
    """A simulated clock: ``run(cost)`` takes ``cost * load(now)`` ms of simulated time."""

    load: Callable[[float], float]
    now: float = 0.0
    last: float = 0.0
    log: list[str] = field(default_factory=list)

    def run(self, cost: float, name: str) -> None:
        self.last = cost * self.load(self.now)
        self.now += self.last
        self.log.append(name)


@dataclass
class MachineTimer:
    """A ``Timer`` that reads the simulated clock instead of a real one."""

    machine: Machine
    name: str = "simulated"

    def __call__(self, fn: Callable[[], object]) -> float:
        fn()
        return self.machine.last


class CostModel(nn.Module):
    """A model whose forward takes ``cost`` simulated ms on ``machine``."""

    def __init__(self, machine: Machine, cost: float, name: str) -> None:
        super().__init__()
        self.machine, self.cost, self.label = machine, cost, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.machine.run(self.cost, self.label)
        return x


class FakeImages:
    image_ids: ClassVar[list[int]] = [1, 2]

    def load_image(self, image_id: int) -> np.ndarray:
        return np.zeros((4, 4, 3), np.uint8)


def spike(until_ms: float, factor: float = 3.0) -> Callable[[float], float]:
    """The machine is ``factor`` times slower before ``until_ms`` (a busy first half)."""
    return lambda now: factor if now < until_ms else 1.0


def drift(per_second: float) -> Callable[[float], float]:
    """The machine slows down linearly: load ``1 + per_second * seconds``."""
    return lambda now: 1.0 + per_second * now / 1000.0


def _contexts(machine: Machine) -> tuple[ModelContext, ModelContext]:
    """(candidate, baseline) contexts; the candidate's ``baseline_model`` is the baseline."""
    cand = CostModel(machine, CANDIDATE_MS, "C")
    base = CostModel(machine, BASELINE_MS, "B")

    def ctx(model: nn.Module) -> ModelContext:
        return ModelContext(
            model=model,
            data=FakeImages(),
            device=torch.device("cpu"),
            task="classification",
            baseline_model=lambda: base,
        )

    return ctx(cand), ctx(base)


PARAMS = {"warmup": 5, "iters": 30, "threads": 1}


def _old_ratio(machine: Machine, monkeypatch: pytest.MonkeyPatch, **params: float) -> float:
    """Each variant's own ``latency_ms`` (candidate first, as ``run_check`` did), divided."""
    monkeypatch.setattr(latency_module, "make_timer", lambda device: MachineTimer(machine))
    cand_ctx, base_ctx = _contexts(machine)
    cand = latency_ms(cand_ctx, **PARAMS, **params).value  # type: ignore[arg-type]
    base = latency_ms(base_ctx, **PARAMS, **params).value  # type: ignore[arg-type]
    return float(cand) / float(base)


def _paired(machine: Machine, monkeypatch: pytest.MonkeyPatch, **params: float) -> tuple:
    monkeypatch.setattr(latency_module, "make_timer", lambda device: MachineTimer(machine))
    cand_ctx, _ = _contexts(machine)
    return latency_ms_paired(cand_ctx, **PARAMS, **params)  # type: ignore[arg-type]


def test_old_separate_timing_is_fooled_by_a_load_spike(monkeypatch: pytest.MonkeyPatch) -> None:
    ratio = _old_ratio(Machine(spike(until_ms=SPIKE_MS)), monkeypatch)
    assert ratio == pytest.approx(3 * TRUE_RATIO)  # 1.5: a 2x faster model "fails" 0.7


@pytest.mark.parametrize("percentile", [50, 90])
def test_paired_timing_gets_the_true_ratio_under_a_spike(
    monkeypatch: pytest.MonkeyPatch, percentile: float
) -> None:
    machine = Machine(spike(until_ms=SPIKE_MS))
    cand, base = _paired(machine, monkeypatch, percentile=percentile)
    assert cand.value / base.value == pytest.approx(TRUE_RATIO)
    spiked = 3 if percentile == 90 else 1  # p90 falls among the slowed calls of both
    assert base.value == pytest.approx(spiked * BASELINE_MS)
    d = cand.details
    assert d["paired"] is True and d["rounds"] == 10 and d["round_calls"] == 3
    assert d["round_ratio_median"] == pytest.approx(TRUE_RATIO)
    # the spike ends inside one round: that round's ratio is off, and the spread shows it
    off = [r for r in d["round_ratios"] if r != pytest.approx(TRUE_RATIO)]
    assert len(off) == 1 and d["round_ratio_min"] == off[0] < TRUE_RATIO
    assert len(d["round_ratios"]) == 10 and d["n"] == base.details["n"] == 30
    assert "10 alternating rounds: per-round ratio median 0.500" in cand.note
    assert "min-max" in cand.note and "IQR" in cand.note


def test_paired_timing_cancels_a_linear_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    old = _old_ratio(Machine(drift(per_second=2.0)), monkeypatch)
    cand, base = _paired(Machine(drift(per_second=2.0)), monkeypatch)
    paired = cand.value / base.value
    assert abs(old / TRUE_RATIO - 1) > 0.3  # the baseline ran later, on a slower machine
    assert abs(paired / TRUE_RATIO - 1) < 0.03
    assert abs(cand.details["round_ratio_median"] / TRUE_RATIO - 1) < 0.03


def test_rounds_alternate_abba_after_warmup() -> None:
    machine = Machine(lambda now: 1.0)
    cand = CostModel(machine, CANDIDATE_MS, "C")
    base = CostModel(machine, BASELINE_MS, "B")
    x = torch.zeros(1)
    samples = time_paired_calls(
        lambda: cand(x), lambda: base(x), MachineTimer(machine), warmup=2, iters=5, round_calls=2
    )
    assert "".join(machine.log) == "BCBC" + "BBCC" + "CCBB" + "BC"
    assert samples.first == ["baseline", "candidate", "baseline"]
    assert samples.candidate == [[5.0, 5.0], [5.0, 5.0], [5.0]]
    assert samples.flat("baseline") == [10.0] * 5 and samples.round_ratios() == [0.5] * 3


def test_round_sizes_and_spread() -> None:
    assert round_sizes(30, 3) == [3] * 10
    assert round_sizes(7, 3) == [3, 3, 1]
    assert round_sizes(2, 3) == [2]
    spread = ratio_spread([0.4, 0.5, 0.6, 0.5, 1.0])
    assert spread["round_ratio_median"] == 0.5 and spread["rounds"] == 5
    assert (spread["round_ratio_min"], spread["round_ratio_max"]) == (0.4, 1.0)
    assert spread["round_ratio_iqr"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="at least one round"):
        ratio_spread([])


def test_paired_needs_a_baseline_model() -> None:
    ctx = ModelContext(
        model=nn.Identity(), data=FakeImages(), device=torch.device("cpu"), task="classification"
    )
    with pytest.raises(ValueError, match="baseline_model"):
        latency_ms_paired(ctx)


def test_registered_as_paired() -> None:
    assert METRICS.get("latency_ms").paired is latency_ms_paired

"""latency_ms: statistics vs numpy, the timing loop on a scripted clock, threads restored,
and a real run of a tiny CPU model."""

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
    PerfCounterTimer,
    latency_input,
    latency_ms,
    latency_stats,
    make_timer,
    time_calls,
)


@dataclass
class ScriptedTimer:
    """Returns scripted durations and counts the calls it ran."""

    times: list[float]
    name: str = "scripted"
    calls: list[int] = field(default_factory=list)

    def __call__(self, fn: Callable[[], object]) -> float:
        fn()
        self.calls.append(1)
        return self.times[len(self.calls) - 1]


class FakeImages:
    """Three 8x8 images with distinct constant values."""

    image_ids: ClassVar[list[int]] = [10, 11, 12]

    def load_image(self, image_id: int) -> np.ndarray:
        return np.full((8, 8, 3), image_id, np.uint8)


class TinyClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return self.net(x)


def _ctx(model: nn.Module, task: str = "classification") -> ModelContext:
    return ModelContext(
        model=model.eval(), data=FakeImages(), device=torch.device("cpu"), task=task
    )


def test_stats_match_numpy() -> None:
    samples = np.random.default_rng(0).gamma(4.0, 2.0, size=37)
    stats = latency_stats(samples.tolist())
    for q in (50, 90, 99):
        assert stats[f"p{q}"] == pytest.approx(np.percentile(samples, q), rel=1e-12)
    assert stats["mean"] == pytest.approx(samples.mean())
    assert stats["std"] == pytest.approx(samples.std(ddof=1))
    assert stats["cv"] == pytest.approx(samples.std(ddof=1) / samples.mean())
    assert stats["min"] == samples.min() and stats["max"] == samples.max() and stats["n"] == 37


def test_stats_small_cases() -> None:
    assert latency_stats([2.0]) == {
        "p50": 2.0, "p90": 2.0, "p99": 2.0, "mean": 2.0, "std": 0.0, "cv": 0.0,
        "min": 2.0, "max": 2.0, "n": 1,
    }  # fmt: skip
    stats = latency_stats([1.0, 2.0, 3.0, 4.0])
    assert stats["p50"] == 2.5 and stats["p90"] == pytest.approx(3.7)
    with pytest.raises(ValueError, match="at least one sample"):
        latency_stats([])


def test_loop_discards_warmup() -> None:
    timer = ScriptedTimer([100.0, 90.0, 1.0, 2.0, 3.0])
    runs: list[int] = []
    samples = time_calls(lambda: runs.append(1), timer, warmup=2, iters=3)
    assert samples == [1.0, 2.0, 3.0]
    assert len(runs) == len(timer.calls) == 5


def test_metric_on_scripted_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    timer = ScriptedTimer([50.0] * 2 + [float(v) for v in range(1, 11)])
    monkeypatch.setattr(latency_module, "make_timer", lambda device: timer)
    model = TinyClassifier()
    result = latency_ms(_ctx(model), percentile=90, batch_size=4, warmup=2, iters=10, threads=1)
    assert result.value == pytest.approx(np.percentile(np.arange(1, 11), 90))
    d = result.details
    assert d["p50"] == 5.5 and d["n"] == 10 and d["min"] == 1.0
    assert d["samples_ms"] == [float(v) for v in range(1, 11)]
    assert (d["device"], d["threads"], d["batch_size"], d["timer"]) == ("cpu", 1, 4, "scripted")
    assert model.seen == [(4, 3, 8, 8)] * 12  # first images, cycled to the batch size


def test_threads_set_during_timing_and_restored() -> None:
    before = torch.get_num_threads()
    inside: list[int] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            inside.append(torch.get_num_threads())
            assert torch.is_inference_mode_enabled()
            return x

    target = 1 if before != 1 else 2
    result = latency_ms(_ctx(Probe()), warmup=1, iters=2, threads=target)
    assert inside == [target] * 3 and result.details["threads"] == target
    assert torch.get_num_threads() == before
    assert latency_ms(_ctx(Probe()), warmup=0, iters=1).details["threads"] == before


def test_detector_input_is_a_list() -> None:
    batch = latency_input(_ctx(nn.Identity(), "detection"), 2)
    assert isinstance(batch, list) and [tuple(t.shape) for t in batch] == [(3, 8, 8)] * 2
    assert batch[1].max().item() == pytest.approx(11 / 255)
    with pytest.raises(ValueError, match="task 'segmentation'"):
        latency_input(_ctx(nn.Identity(), "segmentation"), 1)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"percentile": 101}, r"percentile must be in \[0, 100\]"),
        ({"iters": 0}, "iters must be an integer >= 1"),
        ({"warmup": -1}, "warmup must be an integer >= 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"threads": 0}, "threads must be an integer >= 1 or null"),
    ],
)
def test_validation(params: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        latency_ms(_ctx(TinyClassifier()), **params)


def test_real_cpu_run() -> None:
    model = TinyClassifier()
    result = latency_ms(_ctx(model), percentile=50, batch_size=2, warmup=2, iters=15)
    d = result.details
    assert d["timer"] == "perf_counter_ns" and d["device"] == "cpu" and d["n"] == 15
    assert 0 < d["min"] <= d["p50"] == result.value <= d["p90"] <= d["p99"] < 1000
    assert isinstance(make_timer(torch.device("cpu")), PerfCounterTimer)


def test_registered() -> None:
    info = METRICS.get("latency_ms")
    assert (info.task, info.inputs, info.higher_is_better, info.cacheable) == (
        "any", "model", False, False,
    )  # fmt: skip
    assert set(info.params) == {"percentile", "batch_size", "warmup", "iters", "threads"}

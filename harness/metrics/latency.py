"""Inference latency: CUDA events on GPU, ``time.perf_counter_ns`` with fixed threads on CPU.

The timed call is one forward of the model on a fixed batch built from the first
images of the evaluation data, under ``torch.inference_mode``. Warm-up calls run first
and are discarded. The statistics are a pure function of the samples
(``latency_stats``); the loop takes any ``Timer``, so tests can script the clock.

A check whose thresholds compare with the baseline (``ratio_*``, ``drop_max``,
``increase_max``) times candidate and baseline together (``latency_ms_paired``):
alternating rounds of a few calls each, in ABBA order, so that a change of machine
load hits both models alike; the spread of the per-round ratios is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from robustness_harness.metrics.base import Count, MetricResult, Percentile, PositiveInt
from robustness_harness.metrics.context import ModelContext
from robustness_harness.registry import register_metric


class Timer(Protocol):
    """Runs a call once and returns its duration in milliseconds."""

    name: str

    def __call__(self, fn: Callable[[], object]) -> float: ...


class PerfCounterTimer:
    """Wall-clock time of the call by ``time.perf_counter_ns`` (CPU)."""

    name = "perf_counter_ns"

    def __call__(self, fn: Callable[[], object]) -> float:
        start = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - start) / 1e6


class CudaEventTimer:
    """Device time between two CUDA events around the call, with the device synchronised
    before (no earlier work is counted) and after (the call has finished)."""

    name = "cuda_events"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self, fn: Callable[[], object]) -> float:
        with torch.cuda.device(self.device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))


def make_timer(device: torch.device) -> Timer:
    """CUDA events on a CUDA device, ``perf_counter_ns`` otherwise."""
    return CudaEventTimer(device) if device.type == "cuda" else PerfCounterTimer()


def time_calls(fn: Callable[[], object], timer: Timer, *, warmup: int, iters: int) -> list[float]:
    """``warmup`` discarded calls, then the durations (ms) of ``iters`` timed calls."""
    for _ in range(warmup):
        timer(fn)
    return [timer(fn) for _ in range(iters)]


ROUND_CALLS = 3
"""Timed calls of each model per round of a paired measurement."""


@dataclass(frozen=True)
class PairedSamples:
    """Per-round durations (ms) of candidate and baseline timed in alternating rounds;
    ``first[k]`` says which model ran first in round ``k``."""

    candidate: list[list[float]]
    baseline: list[list[float]]
    first: list[str]

    def flat(self, which: str) -> list[float]:
        """All samples of ``"candidate"`` or ``"baseline"``, in call order."""
        rounds = self.candidate if which == "candidate" else self.baseline
        return [t for r in rounds for t in r]

    def round_ratios(self) -> list[float]:
        """Per round: median candidate duration / median baseline duration."""
        return [
            float(np.median(c) / np.median(b))
            for c, b in zip(self.candidate, self.baseline, strict=True)
        ]


def round_sizes(iters: int, round_calls: int) -> list[int]:
    """``iters`` calls split into rounds of ``round_calls`` (the last one may be shorter)."""
    full, rest = divmod(iters, round_calls)
    return [round_calls] * full + ([rest] if rest else [])


def time_paired_calls(
    candidate: Callable[[], object],
    baseline: Callable[[], object],
    timer: Timer,
    *,
    warmup: int,
    iters: int,
    round_calls: int = ROUND_CALLS,
) -> PairedSamples:
    """``warmup`` discarded calls of each (alternating), then ``iters`` timed calls of each
    in rounds of ``round_calls``: baseline first in even rounds, candidate first in odd
    ones (B C | C B | B C ...), so a linear drift in machine speed cancels out."""
    for _ in range(warmup):
        timer(baseline)
        timer(candidate)
    cand: list[list[float]] = []
    base: list[list[float]] = []
    first: list[str] = []
    for k, n in enumerate(round_sizes(iters, round_calls)):
        order = ("baseline", "candidate") if k % 2 == 0 else ("candidate", "baseline")
        times = {
            which: [timer(baseline if which == "baseline" else candidate) for _ in range(n)]
            for which in order
        }
        cand.append(times["candidate"])
        base.append(times["baseline"])
        first.append(order[0])
    return PairedSamples(cand, base, first)


def ratio_spread(ratios: Sequence[float]) -> dict[str, float | int]:
    """Median, quartiles (p25, p75), IQR, min and max of per-round latency ratios."""
    x = np.asarray(ratios, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("a ratio spread needs at least one round")
    p25, p50, p75 = (float(v) for v in np.percentile(x, [25, 50, 75]))
    return {
        "round_ratio_median": p50,
        "round_ratio_p25": p25,
        "round_ratio_p75": p75,
        "round_ratio_iqr": p75 - p25,
        "round_ratio_min": float(x.min()),
        "round_ratio_max": float(x.max()),
        "rounds": int(x.size),
    }


def describe_spread(spread: dict[str, float | int]) -> str:
    """The note of a paired measurement, e.g. ``timed with the baseline in 10 alternating
    rounds: per-round ratio median 0.52 (IQR 0.50-0.55, min-max 0.48-0.60)``."""
    r = {k: f"{v:.3f}" for k, v in spread.items()}
    return (
        f"timed with the baseline in {spread['rounds']} alternating rounds: per-round ratio "
        f"median {r['round_ratio_median']} (IQR {r['round_ratio_p25']}-{r['round_ratio_p75']}, "
        f"min-max {r['round_ratio_min']}-{r['round_ratio_max']})"
    )


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float | int]:
    """p50/p90/p99 (numpy linear interpolation), mean, std (ddof 1; 0 for one sample),
    cv = std / mean, min, max and n of latency samples in milliseconds."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("latency statistics need at least one sample")
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(x, [50, 90, 99]))
    return {
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "mean": mean,
        "std": std,
        "cv": std / mean if mean > 0 else 0.0,
        "min": float(x.min()),
        "max": float(x.max()),
        "n": int(x.size),
    }


@contextmanager
def num_threads(n: int) -> Iterator[None]:
    """``torch.set_num_threads(n)`` for the block; the previous count is restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def latency_input(ctx: ModelContext, batch_size: int) -> torch.Tensor | list[torch.Tensor]:
    """The first ``batch_size`` images of ``ctx.data`` (cycled if fewer) on ``ctx.device``:
    a list of CHW tensors for detectors, a BCHW tensor for classifiers."""
    ids = list(ctx.data.image_ids)
    if not ids:
        raise ValueError("latency_ms needs at least one image in the evaluation data")
    images = ctx.images([ids[i % len(ids)] for i in range(batch_size)])
    if ctx.task == "detection":
        return list(images.unbind(0)) if isinstance(images, torch.Tensor) else images
    if ctx.task == "classification":
        if not isinstance(images, torch.Tensor):
            raise ValueError("latency_ms of a classifier needs images of one size")
        return images
    raise ValueError(f"latency_ms supports detection and classification, not task {ctx.task!r}")


def device_name(device: torch.device) -> str:
    """``torch.cuda.get_device_name`` on CUDA, else the device type (e.g. ``cpu``)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def _check(
    percentile: float, batch_size: int, warmup: int, iters: int, threads: int | None
) -> None:
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100] (e.g. 90 for p90), got {percentile!r}")
    for name, value, low in (
        ("batch_size", batch_size, 1),
        ("warmup", warmup, 0),
        ("iters", iters, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be an integer >= 1 or null (keep torch's), got {threads!r}")


def measure_latency(
    model: nn.Module,
    batch: torch.Tensor | list[torch.Tensor],
    timer: Timer,
    *,
    warmup: int,
    iters: int,
    threads: int,
) -> list[float]:
    """Samples (ms) of ``model(batch)`` under ``inference_mode`` with ``threads`` CPU threads."""

    def forward() -> Any:
        return model(batch)

    with num_threads(threads), torch.inference_mode():
        return time_calls(forward, timer, warmup=warmup, iters=iters)


def measure_paired_latency(
    candidate: nn.Module,
    baseline: nn.Module,
    batch: torch.Tensor | list[torch.Tensor],
    timer: Timer,
    *,
    warmup: int,
    iters: int,
    threads: int,
    round_calls: int = ROUND_CALLS,
) -> PairedSamples:
    """``time_paired_calls`` of both models on ``batch`` under ``inference_mode`` with
    ``threads`` CPU threads."""

    def forward(model: nn.Module) -> Callable[[], Any]:
        return lambda: model(batch)

    with num_threads(threads), torch.inference_mode():
        return time_paired_calls(
            forward(candidate),
            forward(baseline),
            timer,
            warmup=warmup,
            iters=iters,
            round_calls=round_calls,
        )


@dataclass(frozen=True)
class _Setup:
    """What both forms of ``latency_ms`` time with."""

    percentile: float
    batch_size: int
    threads: int
    timer: Timer
    batch: torch.Tensor | list[torch.Tensor]
    device: torch.device


def _setup(
    ctx: ModelContext,
    percentile: float,
    batch_size: int,
    warmup: int,
    iters: int,
    threads: int | None,
) -> _Setup:
    """Validated parameters, the thread count (torch's when None), timer and input batch."""
    _check(percentile, batch_size, warmup, iters, threads)
    return _Setup(
        percentile=percentile,
        batch_size=batch_size,
        threads=threads or torch.get_num_threads(),
        timer=make_timer(ctx.device),
        batch=latency_input(ctx, batch_size),
        device=ctx.device,
    )


def _result(setup: _Setup, samples: list[float], **extra: Any) -> MetricResult:
    """The value at ``setup.percentile`` of ``samples`` with the report details."""
    details: dict[str, Any] = {
        **latency_stats(samples),
        "percentile": setup.percentile,
        "device": device_name(setup.device),
        "threads": setup.threads,
        "batch_size": setup.batch_size,
        "timer": setup.timer.name,
        "samples_ms": samples,
        **extra,
    }
    return MetricResult(float(np.percentile(samples, setup.percentile)), details)


def latency_ms_paired(
    ctx: ModelContext,
    *,
    percentile: Percentile = 50,
    batch_size: PositiveInt = 1,
    warmup: Count = 5,
    iters: PositiveInt = 30,
    threads: PositiveInt | None = None,
) -> tuple[MetricResult, MetricResult]:
    """``latency_ms`` of the candidate ``ctx.model`` and of ``ctx.baseline_model()`` from
    one measurement in alternating rounds (``time_paired_calls``).

    Each value is the ``percentile`` of that model's ``iters`` calls, so the gated ratio
    is a ratio of robust statistics measured under the same load. The candidate's
    details and note carry the per-round ratios and their spread (``ratio_spread``).
    """
    if ctx.baseline_model is None:
        raise ValueError("a paired latency measurement needs ctx.baseline_model")
    setup = _setup(ctx, percentile, batch_size, warmup, iters, threads)
    paired = measure_paired_latency(
        ctx.model,
        ctx.baseline_model(),
        setup.batch,
        setup.timer,
        warmup=warmup,
        iters=iters,
        threads=setup.threads,
    )
    ratios = paired.round_ratios()
    spread = ratio_spread(ratios)
    pairing = {"paired": True, "round_calls": len(paired.candidate[0])}
    cand = _result(setup, paired.flat("candidate"), **pairing, **spread, round_ratios=ratios)
    base = _result(setup, paired.flat("baseline"), **pairing)
    return MetricResult(cand.value, cand.details, describe_spread(spread)), base


@register_metric(
    "latency_ms",
    task="any",
    inputs="model",
    higher_is_better=False,
    cacheable=False,
    paired=latency_ms_paired,
)
def latency_ms(
    ctx: ModelContext,
    *,
    percentile: Percentile = 50,
    batch_size: PositiveInt = 1,
    warmup: Count = 5,
    iters: PositiveInt = 30,
    threads: PositiveInt | None = None,
) -> MetricResult:
    """Forward latency in ms at ``percentile`` (p50 by default) over ``iters`` timed calls."""
    setup = _setup(ctx, percentile, batch_size, warmup, iters, threads)
    samples = measure_latency(
        ctx.model, setup.batch, setup.timer, warmup=warmup, iters=iters, threads=setup.threads
    )
    return _result(setup, samples)

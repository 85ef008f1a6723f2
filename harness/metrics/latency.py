"""Inference latency: CUDA events on GPU, ``time.perf_counter_ns`` with fixed threads on CPU.

The timed call is one forward of the model on a fixed batch built from the first
images of the evaluation data, under ``torch.inference_mode``. Warm-up calls run first
and are discarded. The statistics are a pure function of the samples
(``latency_stats``); the loop takes any ``Timer``, so tests can script the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from robustness_harness.metrics.context import ModelContext
from robustness_harness.metrics.registry import Count, MetricResult, Percentile, PositiveInt, metric


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


@metric("latency_ms", task="any", inputs="model", higher_is_better=False, cacheable=False)
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
    _check(percentile, batch_size, warmup, iters, threads)
    threads = threads or torch.get_num_threads()
    timer = make_timer(ctx.device)
    batch = latency_input(ctx, batch_size)
    samples = measure_latency(ctx.model, batch, timer, warmup=warmup, iters=iters, threads=threads)
    details: dict[str, Any] = {
        **latency_stats(samples),
        "percentile": percentile,
        "device": device_name(ctx.device),
        "threads": threads,
        "batch_size": batch_size,
        "timer": timer.name,
        "samples_ms": samples,
    }
    return MetricResult(float(np.percentile(samples, percentile)), details)

"""latency_ms on a CUDA device: CUDA events after warm-up, the GPU's name in the details."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from robustness_harness.metrics.context import ModelContext
from robustness_harness.metrics.latency import CudaEventTimer, latency_ms, make_timer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU: run through the device tool"
    ),
]


class FakeImages:
    image_ids: ClassVar[list[int]] = [1, 2, 3]

    def load_image(self, image_id: int) -> np.ndarray:
        return np.full((64, 64, 3), 50 * image_id, np.uint8)


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def test_cuda_latency_uses_events() -> None:
    device = torch.device("cuda")
    model = _model().to(device).eval()
    ctx = ModelContext(model=model, data=FakeImages(), device=device, task="classification")
    result = latency_ms(ctx, percentile=90, batch_size=4, warmup=3, iters=20)
    d = result.details
    assert d["timer"] == "cuda_events" and d["n"] == 20 and d["batch_size"] == 4
    assert d["device"] == torch.cuda.get_device_name(device)
    assert 0 < d["min"] <= d["p50"] <= result.value == d["p90"] <= d["p99"] < 1000


def test_cuda_timer_measures_device_work() -> None:
    device = torch.device("cuda")
    timer = make_timer(device)
    assert isinstance(timer, CudaEventTimer)
    a = torch.rand(2048, 2048, device=device)
    small = min(timer(lambda: a[:64, :64] @ a[:64, :64]) for _ in range(5))
    large = min(timer(lambda: [a @ a for _ in range(10)]) for _ in range(5))
    assert large > 5 * small > 0


def test_cuda_paired_latency_uses_events() -> None:
    from robustness_harness.metrics.latency import latency_ms_paired

    device = torch.device("cuda")
    model, base = _model().to(device).eval(), _model().to(device).eval()
    ctx = ModelContext(
        model=model,
        data=FakeImages(),
        device=device,
        task="classification",
        baseline_model=lambda: base,
    )
    cand, baseline = latency_ms_paired(ctx, batch_size=4, warmup=2, iters=9)
    assert cand.details["timer"] == baseline.details["timer"] == "cuda_events"
    assert cand.details["rounds"] == 3 and len(baseline.details["samples_ms"]) == 9
    assert cand.details["round_ratio_min"] <= cand.details["round_ratio_max"]

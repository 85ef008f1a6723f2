"""Worker → device pinning and CPU thread budgeting (fake device lists)."""

from __future__ import annotations

import os

import pytest
import torch

from robustness_harness_pytest.device import (
    configure_worker,
    cpu_threads,
    pick_device,
    worker_index,
)


@pytest.mark.parametrize(
    ("worker", "expected"), [(None, None), ("master", None), ("gw0", 0), ("gw13", 13)]
)
def test_worker_index(worker: str | None, expected: int | None) -> None:
    assert worker_index(worker) == expected


@pytest.mark.parametrize(
    ("requested", "worker", "gpus", "expected"),
    [
        ("auto", None, 0, "cpu"),
        ("auto", "gw3", 0, "cpu"),
        ("auto", None, 2, "cuda:0"),
        ("auto", "gw0", 2, "cuda:0"),
        ("auto", "gw1", 2, "cuda:1"),
        ("auto", "gw2", 2, "cuda:0"),
        ("auto", "gw5", 4, "cuda:1"),
        ("cuda", "gw1", 2, "cuda:1"),
        ("cpu", "gw1", 2, "cpu"),
        ("cuda:1", "gw0", 2, "cuda:1"),
        ("cuda", "gw0", 0, "cuda"),  # left for resolve_device to reject with a clear error
    ],
)
def test_pick_device(requested: str, worker: str | None, gpus: int, expected: str) -> None:
    assert pick_device(requested, worker, gpus) == expected


@pytest.mark.parametrize(
    ("workers", "cores", "expected"), [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 16, 8), (0, 4, 4)]
)
def test_cpu_threads_never_oversubscribe(workers: int, cores: int, expected: int) -> None:
    assert cpu_threads(workers, cores) == expected


_CORES = os.cpu_count() or 1


@pytest.mark.parametrize(
    ("threads", "workers", "expected"), [(1, 1, 1), (3, 2, 3), (None, 2, max(1, _CORES // 2))]
)
def test_configure_worker_sets_threads(threads: int | None, workers: int, expected: int) -> None:
    before = torch.get_num_threads()
    try:
        assert configure_worker("cpu", "gw0", workers, threads=threads) == "cpu"
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)

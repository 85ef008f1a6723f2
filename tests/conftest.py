"""Shared test fixtures: one generated toydrive copy for the whole test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_test_process() -> None:
    """Keep torch from oversubscribing the 2-core CI machine."""
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_data_root() -> Path:
    """Generated datasets shared by tests and by `pytest suites/` (the repo's cache)."""
    root = Path(os.environ.get("HARNESS_CACHE", REPO / ".harness-cache")) / "data"
    root.mkdir(parents=True, exist_ok=True)
    return root

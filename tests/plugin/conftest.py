"""Shared pytester setup: small suites on the embedded default, a private cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def suite_dir(pytester: pytest.Pytester, shared_data_root: Path) -> pytest.Pytester:
    pytester.mkdir("suites")
    pytester.makeini(
        f"[pytest]\naddopts = --harness-limit 24 --harness-data-root {shared_data_root} "
        f"--harness-cache {pytester.path / 'cache'}\n"
    )
    return pytester

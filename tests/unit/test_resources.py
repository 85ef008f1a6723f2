"""Peak-memory line of the terminal summary."""

from __future__ import annotations

import numpy as np

from fixtures.resources import describe, peak_rss_mib


def test_peak_rss_grows_with_an_allocation() -> None:
    before, _ = peak_rss_mib()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB touched
    after, _ = peak_rss_mib()
    assert block.sum() > 0 and after >= before + 60


def test_describe_mentions_children_only_when_present() -> None:
    assert describe("gw0", 1234.4, 0.0) == "gw0 1234 MiB"
    assert describe("main", 900.0, 210.6) == "main 900 MiB (+ child process 211 MiB)"

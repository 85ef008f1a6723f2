"""Peak-memory line of the terminal summary."""

from __future__ import annotations

import subprocess
import sys

from robustness_harness_pytest.resources import describe

# A fresh interpreter (whose peak may start at its parent's RSS on Linux) touches more
# memory than that peak, so the new peak must exceed it.
PROBE = """
import numpy as np
from robustness_harness_pytest.resources import peak_rss_mib
before, _ = peak_rss_mib()
block = np.ones(int(before + 128) * 2**20 // 8)
after, _ = peak_rss_mib()
print(before, after, block[-1])
"""


def test_peak_rss_grows_with_an_allocation() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    before, after, last = (float(x) for x in out.stdout.split())
    assert last == 1.0 and after >= before + 120


def test_describe_mentions_children_only_when_present() -> None:
    assert describe("gw0", 1234.4, 0.0) == "gw0 1234 MiB"
    assert describe("main", 900.0, 210.6) == "main 900 MiB (+ child process 211 MiB)"

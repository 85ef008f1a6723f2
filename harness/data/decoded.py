"""Decoded images kept in memory, so a process decodes each image file once.

A suite predicts the same evaluation images for the baseline and every variant, and
fine-tuning reads its training images every epoch; decoding PNG/JPEG is the largest
cost of the harness's own around ``model(x)``. Entries are keyed by the file's path,
size and modification time (a replaced file is decoded again) and evicted least
recently used beyond a byte budget: ``HARNESS_IMAGE_MEMORY_MB`` (default 512, ``0``
turns the memory off).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from robustness_harness.errors import HarnessError

ENV_VAR = "HARNESS_IMAGE_MEMORY_MB"
DEFAULT_MB = 512


def budget_bytes() -> int:
    """The byte budget from ``HARNESS_IMAGE_MEMORY_MB`` (default 512 MiB)."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_MB * 2**20
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0:
        raise HarnessError(
            f"environment variable {ENV_VAR}={raw!r} is not a size in MiB",
            hint=f"set it to a number >= 0 (0 turns the decoded-image memory off) or unset it "
            f"for the default {DEFAULT_MB}",
        )
    return int(megabytes * 2**20)


class DecodedImages:
    """A thread-safe, byte-bounded LRU of decoded uint8 images (callers get copies)."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = budget_bytes() if max_bytes is None else max_bytes
        self._entries: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, path: Path, decode: Callable[[Path], np.ndarray]) -> np.ndarray:
        """``decode(path)``, or a copy of the array remembered for this version of the
        file. Errors of ``stat`` and ``decode`` reach the caller unchanged."""
        if self.max_bytes <= 0:
            return decode(path)
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            array = self._entries.get(key)
            if array is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return array.copy()
        array = decode(path)
        with self._lock:
            self.misses += 1
            if array.nbytes <= self.max_bytes and key not in self._entries:
                self._entries[key] = array.copy()
                self._bytes += array.nbytes
                while self._bytes > self.max_bytes:
                    _, evicted = self._entries.popitem(last=False)
                    self._bytes -= evicted.nbytes
        return array

    def clear(self) -> None:
        """Forget every image."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

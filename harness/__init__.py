"""robustness-harness: release gates for compressed vision models.

The public names load lazily, so ``import harness.errors`` stays cheap::

    from harness import metric, MetricResult, HarnessSession
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "metric": "harness.metrics.registry",
    "MetricResult": "harness.metrics.registry",
    "METRICS": "harness.metrics",
    "ModelContext": "harness.metrics.context",
    "CorruptionGrid": "harness.metrics.context",
    "compression_method": "harness.compress.registry",
    "CompressContext": "harness.compress.registry",
    "HarnessSession": "harness.session",
    "HarnessOptions": "harness.session",
    "HarnessError": "harness.errors",
    "load_suite": "harness.spec",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")

"""robustness-harness: release gates for compressed vision models.

The public names load lazily, so ``import robustness_harness.errors`` stays cheap::

    from robustness_harness import metric, MetricResult, HarnessSession
    # what a metric author receives: DetectionPredictions, ClassPredictions, CocoTargets,
    # CocoDetectionData, ClassificationData, ModelContext, CorruptionGrid, and the
    # parameter types PositiveInt, Probability, ...
    from robustness_harness import load_results, compare_results  # read results.json back
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "metric": "robustness_harness.registry",
    "register_metric": "robustness_harness.registry",
    "register_compression": "robustness_harness.registry",
    "register_model": "robustness_harness.registry",
    "register_dataset": "robustness_harness.registry",
    "MetricResult": "robustness_harness.metrics.base",
    "METRICS": "robustness_harness.metrics",
    "ModelContext": "robustness_harness.metrics.context",
    "MetricInfo": "robustness_harness.metrics.base",
    "RECOMPUTE": "robustness_harness.metrics.base",
    "NonNegative": "robustness_harness.metrics.base",
    "Positive": "robustness_harness.metrics.base",
    "PositiveInt": "robustness_harness.metrics.base",
    "Count": "robustness_harness.metrics.base",
    "Percentile": "robustness_harness.metrics.base",
    "Probability": "robustness_harness.metrics.base",
    "DetectionPredictions": "robustness_harness.inference.predictions",
    "ClassPredictions": "robustness_harness.inference.predictions",
    "Detections": "robustness_harness.inference.predictions",
    "CocoTargets": "robustness_harness.metrics.detection",
    "CocoDetectionData": "robustness_harness.data.coco",
    "ClassificationData": "robustness_harness.data.classification_sets",
    "CorruptionGrid": "robustness_harness.metrics.context",
    "compression_method": "robustness_harness.registry",
    "CompressContext": "robustness_harness.compress.base",
    "ModelEntry": "robustness_harness.user_code",
    "HarnessSession": "robustness_harness.run.session",
    "HarnessOptions": "robustness_harness.run.session",
    "HarnessError": "robustness_harness.errors",
    "load_suite": "robustness_harness.suite",
    "load_results": "robustness_harness.report.compare",
    "compare_results": "robustness_harness.report.compare",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")

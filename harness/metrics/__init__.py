"""Metrics: the registry, the ``@metric`` decorator and the built-in metrics.

Importing this package registers the built-in metrics.
"""

from robustness_harness.metrics import (
    adversarial,
    calibration,
    classification,
    detection,
    latency,
    robustness,
    size,
    stability,
)
from robustness_harness.metrics.detection import CocoEvalResult, coco_evaluate
from robustness_harness.metrics.registry import METRICS, MetricInfo, MetricResult, metric

__all__ = [
    "METRICS",
    "CocoEvalResult",
    "MetricInfo",
    "MetricResult",
    "adversarial",
    "calibration",
    "classification",
    "coco_evaluate",
    "detection",
    "latency",
    "metric",
    "robustness",
    "size",
    "stability",
]

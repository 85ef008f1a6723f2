"""Metrics: the built-in metrics, their types and the ``METRICS`` registry.

Importing this package registers the built-in metrics; look metric names up through it
(``robustness_harness.registry`` holds the registry and the ``register_metric`` decorator).
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
from robustness_harness.metrics.base import MetricInfo, MetricResult
from robustness_harness.metrics.detection import CocoEvalResult, coco_evaluate
from robustness_harness.registry import METRICS, metric, register_metric

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
    "register_metric",
    "robustness",
    "size",
    "stability",
]

"""What ``import robustness_harness`` offers metric and plug-in authors."""

from __future__ import annotations

import robustness_harness as h


def test_the_types_a_metric_author_receives_are_exported() -> None:
    for name in h.__all__:  # each public name resolves to its object
        assert getattr(h, name) is not None, name
    for name in (
        "DetectionPredictions",
        "ClassPredictions",
        "CocoTargets",
        "ModelContext",
        "CorruptionGrid",
        "MetricResult",
        "PositiveInt",
        "Probability",
        "CompressContext",
    ):
        assert name in h.__all__, name

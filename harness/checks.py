"""One gate = one (variant, check): compute the metric, reduce, decide, explain."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from harness.metrics.registry import MetricInfo
from harness.spec import CheckSpec, Decision, Thresholds, decide, reduce_per_class

_REDUCE_LABEL = {
    "worst": "worst per-class {m}",
    "worst_drop": "worst per-class {m} drop",
    "mean": "mean per-class {m}",
}


def metric_label(metric: str) -> str:
    """Short display name: ``per_class_ap`` → ``AP``, ``map`` → ``mAP``."""
    if metric.startswith("per_class_"):
        return metric.removeprefix("per_class_").upper()
    return {"map": "mAP"}.get(metric, metric)


class CheckSkipped(Exception):
    """A check that cannot run here (e.g. ``device: cuda`` without a GPU); the message
    is the reason shown by pytest."""


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one gate, with everything a failure message or report needs."""

    suite: str
    variant: str
    check: str
    metric: str
    value: float
    baseline_value: float | None
    decision: Decision
    thresholds: Thresholds
    baseline_variant: str
    n_images: int
    seed: int
    worst_class: str | None = None
    per_class: dict[str, float] | None = None
    baseline_per_class: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.decision.passed

    def label(self) -> str:
        """What was measured, e.g. ``worst per-class AP drop`` or ``map``."""
        template = _REDUCE_LABEL.get(self.extra.get("reduce", ""), "{m}")
        return template.format(m=metric_label(self.metric))

    def headline(self) -> str:
        """First line: value, the class it comes from, and the violated thresholds."""
        text = f"{self.label()} {_fmt(self.value)}"
        if self.worst_class is not None and self.per_class is not None:
            cand = self.per_class.get(self.worst_class, math.nan)
            if self.baseline_per_class is not None:
                base = self.baseline_per_class.get(self.worst_class, math.nan)
                text += f" (class '{self.worst_class}': {_fmt(base)} -> {_fmt(cand)})"
            else:
                text += f" (class '{self.worst_class}')"
        elif self.baseline_value is not None:
            text += f" (baseline {_fmt(self.baseline_value)})"
        if self.decision.violations:
            # "value 0.112 > max 0.08" → "> max 0.08": the value is already on the line
            text += " " + "; ".join(re.sub(r"^value \S+ ", "", v) for v in self.decision.violations)
        else:
            text += f" within {self.thresholds.describe()}"
        return text

    def context_line(self) -> str:
        """Second line: baseline variant, number of images, seed, and a metric's note."""
        text = f"baseline '{self.baseline_variant}' | {self.n_images} images | seed {self.seed}"
        note = self.extra.get("note")
        return f"{text} | {note}" if note else text

    def message(self) -> str:
        return f"{self.headline()}\n{self.context_line()}"

    def properties(self) -> dict[str, Any]:
        """Flat values for JUnit properties and the summary table."""
        props: dict[str, Any] = {
            "harness_metric": self.metric,
            "harness_value": self.value,
            "harness_threshold": self.thresholds.describe(),
            "harness_passed": self.passed,
        }
        if self.baseline_value is not None:
            props["harness_baseline_value"] = self.baseline_value
        if self.worst_class is not None:
            props["harness_worst_class"] = self.worst_class
        for key, value in self.extra.get("details", {}).items():
            if isinstance(value, int | float | str | bool):
                props[f"harness_{key}"] = value
        return props


def _fmt(x: float) -> str:
    return "nan" if x is None or math.isnan(x) else f"{x:.3f}"


def decide_check(
    *,
    check: CheckSpec,
    info: MetricInfo,
    candidate: float | dict[str, float],
    baseline: float | dict[str, float] | None,
) -> tuple[float, float | None, Decision, str | None]:
    """Reduce per-class values if needed, then apply the check's thresholds.

    Returns ``(value, baseline_value, decision, worst_class)``.
    """
    thresholds = Thresholds.from_check(check)
    worst_class = None
    if isinstance(candidate, dict):
        base_map = baseline if isinstance(baseline, dict) else None
        value, worst_class = reduce_per_class(
            candidate, base_map, check.reduce, info.higher_is_better
        )
        baseline_value = None
        if check.reduce != "worst_drop" and base_map is not None:
            baseline_value, _ = reduce_per_class(
                base_map, None, check.reduce, info.higher_is_better
            )
        compare_to = None if check.reduce == "worst_drop" else baseline_value
        return value, baseline_value, decide(thresholds, value, compare_to), worst_class
    base_value = float(baseline) if isinstance(baseline, int | float) else None
    return float(candidate), base_value, decide(thresholds, float(candidate), base_value), None

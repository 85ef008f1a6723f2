"""One gate = one (variant, check): its outcome and how it reads (failure message,
JUnit properties), and the statistics behind it. Deciding is ``decide``'s."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from robustness_harness.suite import Decision, Thresholds
from robustness_harness.suite.thresholds import Interval

if TYPE_CHECKING:
    from robustness_harness.stats import Anova, RunTest

_REDUCE_LABEL = {
    "worst": "worst per-class {m}",
    "worst_drop": "worst per-class {m} drop",
    "mean": "mean per-class {m}",
}


def metric_label(metric: str) -> str:
    """Short display name: ``per_class_ap`` → ``AP``, ``per_class_accuracy`` →
    ``accuracy``, ``map`` → ``mAP``."""
    if metric.startswith("per_class_ap"):  # per_class_ap, per_class_ap50
        return metric.removeprefix("per_class_").upper()
    return {"map": "mAP"}.get(metric, metric.removeprefix("per_class_"))


class CheckSkipped(Exception):
    """A check that cannot run here (e.g. ``device: cuda`` without a GPU); the message
    is the reason shown by pytest."""


@dataclass(frozen=True)
class GateStatistics:
    """What stands behind a statistical decision: repeated runs (seeds and per-run
    values of the gated value), confidence intervals per gated quantity (paired
    bootstrap over images, or t-intervals across runs), and an informational ANOVA."""

    decide: str = "point"
    method: str = ""
    """``bootstrap`` (over images), ``paired_t`` (across runs) or empty (no interval)."""
    intervals: dict[str, Interval] = field(default_factory=dict)
    resamples: int | None = None
    seeds: list[int] = field(default_factory=list)
    run_values: list[float] = field(default_factory=list)
    t_tests: list[RunTest] = field(default_factory=list)
    anova: Anova | None = None

    @property
    def runs(self) -> int:
        return len(self.run_values)

    @property
    def std(self) -> float:
        """Sample standard deviation of the per-run values (NaN for one run)."""
        n = len(self.run_values)
        if n < 2:
            return math.nan
        mean = math.fsum(self.run_values) / n
        return math.sqrt(math.fsum((v - mean) ** 2 for v in self.run_values) / (n - 1))

    def notes(self, value_label: str) -> list[str]:
        """Context-line parts, e.g. ``95% CI of drop [0.081, 0.143]``."""
        out: list[str] = []
        if self.method == "bootstrap":
            for quantity, ci in self.intervals.items():
                what = value_label if quantity == "value" else quantity
                out.append(f"{ci.describe().replace(' CI ', f' CI of {what} ')}")
        out += [t.describe() for t in self.t_tests]
        if self.anova is not None:
            out.append(self.anova.describe())
        return out

    def properties(self) -> dict[str, Any]:
        """Flat values for JUnit properties (``harness_`` is prefixed by the caller)."""
        props: dict[str, Any] = {}
        if self.method:
            props["decide"] = self.decide
            props["interval"] = self.method
        for quantity, ci in self.intervals.items():
            props["confidence"] = ci.confidence
            props[f"ci_{quantity}_low"] = ci.low
            props[f"ci_{quantity}_high"] = ci.high
        if self.resamples is not None:
            props["resamples"] = self.resamples
        if self.runs > 1:
            props["runs"] = self.runs
            props["seeds"] = ",".join(map(str, self.seeds))
            props["run_values"] = ",".join(f"{v:.6g}" for v in self.run_values)
            props["value_std"] = self.std
        for t in self.t_tests:
            props[f"t_{t.limit.key}_statistic"] = t.statistic
            props[f"t_{t.limit.key}_p"] = t.pvalue
        if self.anova is not None:
            props["anova_f"] = self.anova.f
            props["anova_p"] = self.anova.p
        return props


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
    statistics: GateStatistics | None = None

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
        if self.statistics is not None and self.statistics.runs > 1:
            text += f" ± {_fmt(self.statistics.std)} (mean of {self.statistics.runs} runs)"
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
            text += " " + "; ".join(_VALUE.sub("", v) for v in self.decision.violations)
        else:
            text += f" within {self.thresholds.describe()}"
        return text

    def context_line(self) -> str:
        """Second line: baseline variant, number of images, seed(s), a metric's note, and
        the statistics (confidence intervals, t-tests, ANOVA)."""
        stats = self.statistics
        seeds = f"seed {self.seed}"
        if stats is not None and stats.runs > 1:
            seeds = f"seeds {', '.join(map(str, stats.seeds))} ({stats.runs} runs)"
        parts = [f"baseline '{self.baseline_variant}'", f"{self.n_images} images", seeds]
        if self.extra.get("note"):
            parts.append(self.extra["note"])
        if stats is not None:
            parts += stats.notes(self.label())
        return " | ".join(parts)

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
        if self.statistics is not None:
            props.update({f"harness_{k}": v for k, v in self.statistics.properties().items()})
        return props


_VALUE = re.compile(r"^value (?:(?!\S+ CI)\S+ )?")
"""A violation's leading ``value 0.4 `` (or ``value `` of ``value 95% CI ...``): the
headline already shows the value."""


def _fmt(x: float) -> str:
    return "nan" if x is None or math.isnan(x) else f"{x:.3f}"

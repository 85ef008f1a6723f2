"""The metric registry and the ``@metric`` decorator for new safety assertions."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from harness.registry import Registry

Task = Literal["detection", "classification", "any"]

MetricFn = Callable[..., float | dict[str, float]]


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric.

    ``fn(preds, targets, **params)`` returns a float, or a mapping class name → float
    when ``per_class`` (a suite then picks a ``reduce``). ``params`` are the
    function's keyword-only parameters; suites may set them by name.
    """

    name: str
    fn: MetricFn
    task: Task
    higher_is_better: bool
    per_class: bool = False
    description: str = ""

    @property
    def params(self) -> dict[str, inspect.Parameter]:
        """The keyword-only parameters a suite may set, by name."""
        sig = inspect.signature(self.fn)
        return {n: p for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def __call__(self, preds: Any, targets: Any, **params: Any) -> float | dict[str, float]:
        return self.fn(preds, targets, **params)


METRICS: Registry[MetricInfo] = Registry("metric", group="harness.metrics")


def metric(
    name: str,
    *,
    task: Task = "any",
    higher_is_better: bool = True,
    per_class: bool = False,
) -> Callable[[MetricFn], MetricFn]:
    """Register ``fn(preds, targets, *, params...)`` as metric ``name`` usable in YAML.

    >>> @metric("person_miss_rate", task="detection", higher_is_better=False)
    ... def person_miss_rate(preds, targets, *, iou=0.5, score=0.3) -> float: ...
    """

    def wrap(fn: MetricFn) -> MetricFn:
        doc = inspect.getdoc(fn) or ""
        METRICS.register(
            name,
            MetricInfo(
                name=name,
                fn=fn,
                task=task,
                higher_is_better=higher_is_better,
                per_class=per_class,
                description=doc.splitlines()[0] if doc else "",
            ),
        )
        return fn

    return wrap

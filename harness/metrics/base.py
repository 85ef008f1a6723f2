"""What a metric is: ``MetricInfo`` (a registered metric), ``MetricResult`` (its value with
details) and the parameter and input types a metric author uses.

Metrics register with ``robustness_harness.registry.register_metric`` (alias ``metric``)
into ``METRICS``; importing ``robustness_harness.metrics`` registers the built-in ones."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

# Constrained parameter types: the suite schema checks them when a suite loads.
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]
Percentile = Annotated[float, Field(ge=0, le=100)]
Probability = Annotated[float, Field(ge=0, le=1)]

Task = Literal["detection", "classification", "any"]
Inputs = Literal["predictions", "pair", "model", "corruption_grid"]
"""What a metric function receives (first positional arguments):

* ``predictions``: ``fn(preds, data, **params)`` — cached predictions of one variant
  and its evaluation data (the default; user metrics usually are this kind);
* ``pair``: ``fn(preds, baseline_preds, data, **params)`` — candidate vs baseline
  (stability metrics such as ``flip_rate``);
* ``model``: ``fn(ctx: ModelContext, **params)`` — needs the model itself (attacks,
  latency, size, saliency); see ``robustness_harness.metrics.context.ModelContext``;
* ``corruption_grid``: ``fn(grid: CorruptionGrid, **params)`` — aggregates the task's
  clean and corrupted scores (mPC, rPC, CE); the check must name ``corruptions``.
"""

Value = float | dict[str, float]

Resampled = Callable[[np.ndarray], np.ndarray | dict[str, np.ndarray]]
"""``values(counts)``: image multiplicities (B, n), columns in ``data.image_ids`` order →
the metric on each resampled multiset: (B,) values, or per class name (B,) arrays."""

Resampler = Callable[..., Resampled]
"""``resampler(*inputs, **params)``: given a metric's inputs (as for the metric itself),
prepare once and return ``values(counts)`` (see ``Resampled``)."""

RECOMPUTE = "recompute"
"""``resample=RECOMPUTE``: call the metric again on each resampled image multiset (a view
of the data that may hold an image several times). Only data whose views may repeat an
image support it: classification data (see ``robustness_harness.metrics.resample``)."""

RECOMPUTE_TASKS = ("classification",)


@dataclass(frozen=True)
class MetricResult:
    """A metric value with details for reports (e.g. latency percentiles) and a note
    for the failure message (e.g. "attacked through the fake-quant twin")."""

    value: Value
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""


MetricFn = Callable[..., Value | MetricResult]

PairedFn = Callable[..., tuple[MetricResult, MetricResult]]
"""``paired(ctx, **params) -> (candidate, baseline)``: a model metric of the candidate
``ctx.model`` and of ``ctx.baseline_model()`` measured together (e.g. latency timed in
alternating rounds), used when a check's thresholds compare with the baseline."""


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric.

    The function returns a float, a mapping class name → float when ``per_class`` (a
    suite then picks a ``reduce``), or a ``MetricResult``. ``params`` are the
    function's keyword-only parameters; suites may set them by name. ``cacheable``
    model metrics (attacks) are stored in the cache; uncached ones (latency) are
    measured on every run.
    """

    name: str
    fn: MetricFn
    task: Task
    higher_is_better: bool
    per_class: bool = False
    description: str = ""
    inputs: Inputs = "predictions"
    cacheable: bool = True
    compares: bool = False
    resample: Resampler | str | None = None
    paired: PairedFn | None = None

    def resamplable(self, task: str) -> bool:
        """Whether the metric can be recomputed on resampled images (``confidence:``) for
        a ``task`` model: a custom resampler, or ``RECOMPUTE`` on classification data."""
        if self.resample is None or self.inputs not in ("predictions", "pair"):
            return False
        return self.resample != RECOMPUTE or task in RECOMPUTE_TASKS

    @property
    def compares_with_baseline(self) -> bool:
        """The value already compares the variant with the baseline (flip rates,
        saliency change): no baseline value, no relative thresholds, baseline not gated."""
        return self.compares or self.inputs == "pair"

    @property
    def params(self) -> dict[str, inspect.Parameter]:
        """The keyword-only parameters a suite may set, by name."""
        sig = inspect.signature(self.fn)
        return {n: p for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def supports(self, task: str) -> bool:
        return self.task == "any" or self.task == task

    def __call__(self, *args: Any, **params: Any) -> MetricResult:
        out = self.fn(*args, **params)
        return out if isinstance(out, MetricResult) else MetricResult(out)

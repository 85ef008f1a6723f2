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
"""A metric's kind, read from the inputs it names (``MetricInputs``):

* ``predictions``: ``fn(preds, data, **params)`` — cached predictions of one variant
  and its evaluation data (user metrics usually are this kind);
* ``pair``: ``fn(preds, baseline_preds, data, **params)`` — candidate vs baseline
  (stability metrics such as ``flip_rate``);
* ``model``: ``fn(ctx, **params)`` — needs the model itself (attacks, latency, size,
  saliency); see ``robustness_harness.metrics.context.ModelContext``;
* ``corruption_grid``: ``fn(grid, **params)`` — aggregates the task's clean and corrupted
  scores (mPC, rPC, CE); the check must name ``corruptions``.
"""


@dataclass(frozen=True)
class MetricInputs:
    """What the harness hands every metric, whatever its kind. A metric function (and its
    resampler or paired function) names the parts it takes as its positional parameters,
    as pytest fixtures are named: ``preds``, ``baseline_preds``, ``data`` (or
    ``targets``), ``ctx``, ``grid``, or ``inputs`` for this whole object; its keyword-only
    parameters are the check's parameters."""

    data: Any = None
    """The check's evaluation images (``CocoDetectionData``, ``ClassificationData``)."""
    preds: Any = None
    """The variant's predictions on ``data`` (``DetectionPredictions``, ``ClassPredictions``)."""
    baseline_preds: Any = None
    """The baseline's predictions on ``data`` (``pair`` metrics)."""
    ctx: Any = None
    """The variant's model and its surroundings (``ModelContext``; ``model`` metrics)."""
    grid: Any = None
    """Clean and corrupted scores (``CorruptionGrid``; ``corruption_grid`` metrics)."""


INPUT_NAMES = {
    "preds": "preds",
    "baseline_preds": "baseline_preds",
    "data": "data",
    "targets": "data",
    "ctx": "ctx",
    "grid": "grid",
}
"""Positional parameter name → the ``MetricInputs`` field it receives."""
WHOLE_INPUTS = "inputs"


def input_parameters(fn: Callable[..., Any]) -> list[str]:
    """The positional parameters of ``fn``: the inputs it names."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind in positional]


def unknown_inputs(fn: Callable[..., Any]) -> list[str]:
    """Positional parameters of ``fn`` that name no input."""
    return [n for n in input_parameters(fn) if n not in INPUT_NAMES and n != WHOLE_INPUTS]


def kind_of(fn: Callable[..., Any]) -> Inputs | None:
    """The kind the inputs ``fn`` names make it (None when it takes ``inputs`` whole)."""
    names = set(input_parameters(fn))
    if "ctx" in names:
        return "model"
    if "grid" in names:
        return "corruption_grid"
    if "baseline_preds" in names:
        return "pair"
    if names & {"preds", "data", "targets"}:
        return "predictions"
    return None


def bound_inputs(fn: Callable[..., Any], inputs: MetricInputs) -> list[Any]:
    """The positional arguments ``fn`` takes from ``inputs``, by parameter name."""
    return [
        inputs if name == WHOLE_INPUTS else getattr(inputs, INPUT_NAMES[name])
        for name in input_parameters(fn)
    ]


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
"""``paired(ctx, **params) -> (candidate, baseline)`` (inputs named as for the metric,
``MetricInputs``): a model metric of the candidate
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
        """The metric on one ``MetricInputs`` (how the harness calls every metric), or on
        the function's own positional arguments (direct calls in tests)."""
        if len(args) == 1 and isinstance(args[0], MetricInputs):
            args = tuple(bound_inputs(self.fn, args[0]))
        out = self.fn(*args, **params)
        return out if isinstance(out, MetricResult) else MetricResult(out)

    def prepare_resampling(self, inputs: MetricInputs, **params: Any) -> Resampled:
        """The custom ``resample`` function's ``values(counts)`` on ``inputs``."""
        assert callable(self.resample)
        return self.resample(*bound_inputs(self.resample, inputs), **params)

    def measure_paired(
        self, inputs: MetricInputs, **params: Any
    ) -> tuple[MetricResult, MetricResult]:
        """``paired`` on ``inputs``: (candidate, baseline) measured together."""
        assert self.paired is not None
        return self.paired(*bound_inputs(self.paired, inputs), **params)

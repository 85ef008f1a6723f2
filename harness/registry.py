"""The registries: metrics, compression methods, models and datasets.

Each is a ``Registry`` with a ``register_*`` decorator, did-you-mean errors for unknown
names and an entry-point group that plug-in packages fill without the core importing them:

* ``METRICS``, ``@register_metric``: group ``robustness_harness.metrics``;
* ``METHODS``, ``@register_compression``: group ``robustness_harness.compression``;
* ``MODELS``, ``@register_model``: group ``robustness_harness.models``;
* ``DATASETS``, ``@register_dataset``: group ``robustness_harness.datasets``.

``metric`` and ``compression_method`` are the same decorators under their older names.
What a registered item is (``MetricInfo``, ``MethodInfo``, ``ModelEntry``) belongs to its
concept's module; this module imports none of them at load time.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from robustness_harness.errors import HarnessError, UnknownNameError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from robustness_harness.compress.base import CompressFn, DataUse, MethodInfo, StepKind
    from robustness_harness.metrics.base import (
        Inputs,
        MetricFn,
        MetricInfo,
        PairedFn,
        Resampler,
        Task,
    )

T = TypeVar("T")


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    """A ``did you mean 'x'?`` phrase for the closest known name, or ``''``.

    Case differences count least: ``mAp`` suggests ``map`` before ``mpc``.
    """
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"did you mean '{by_lower[close[0]]}'? " if close else ""


class Registry(Generic[T]):
    """A mapping from names to objects, filled by ``register`` or by entry points.

    ``kind`` names what the registry holds (``"metric"``, ``"model"``) in errors;
    ``group`` is an optional entry-point group that is loaded on first lookup, so
    plug-in packages (and ``models/``) register without the core importing them.
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._entry_points_loaded = group is None

    def register(self, name: str, item: T, *, replace: bool = False) -> T:
        """Add ``item`` under ``name``; a second registration of a name is an error."""
        if name in self._items and not replace and self._items[name] is not item:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._items[name] = item
        return item

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""

        def wrap(item: T) -> T:
            return self.register(name, item)

        return wrap

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group or ""):
            if ep.name not in self._items:
                self._items[ep.name] = _LazyEntryPoint(ep)  # type: ignore[assignment]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str, *, file: str | None = None, field: str | None = None) -> T:
        """The item called ``name``; an unknown name raises with a did-you-mean."""
        self._load_entry_points()
        if name not in self._items:
            known = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'",
                file=file,
                field=field,
                hint=f"{did_you_mean(name, known)}known {self.kind}s: {', '.join(known) or 'none'}",
            )
        item = self._items[name]
        if isinstance(item, _LazyEntryPoint):
            item = self._items[name] = item.load()
        return item


class _LazyEntryPoint:
    """An entry point that is imported only when its name is looked up."""

    def __init__(self, ep: object) -> None:
        self.ep = ep

    def load(self) -> object:
        return self.ep.load()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------
# The four registries. Built-in metrics and compression methods register when their
# packages are imported (``robustness_harness.metrics``, ``robustness_harness.compress``:
# look names up through those packages to have them); models and datasets come from the
# entry points of ``models/``, ``data/builtin.py`` and plug-in packages.

METRICS: Registry[MetricInfo] = Registry("metric", group="robustness_harness.metrics")
METHODS: Registry[MethodInfo] = Registry(
    "compression method", group="robustness_harness.compression"
)
MODELS: Registry[Any] = Registry("model", group="robustness_harness.models")
"""``ModelEntry`` objects or plain builders ``build(**kwargs) -> nn.Module`` (detection)."""
DATASETS: Registry[Callable[..., Any]] = Registry("dataset", group="robustness_harness.datasets")
"""Functions ``(root, **params) -> {split: data}`` (see ``robustness_harness.data.builtin``)."""


def register_metric(
    name: str,
    *,
    task: Task = "any",
    higher_is_better: bool = True,
    per_class: bool = False,
    inputs: Inputs | None = None,
    cacheable: bool = True,
    compares: bool = False,
    resample: Resampler | str | None = None,
    paired: PairedFn | None = None,
) -> Callable[[MetricFn], MetricFn]:
    """Register a function as metric ``name``, usable in YAML by that name.

    >>> @register_metric("person_miss_rate", task="detection", higher_is_better=False)
    ... def person_miss_rate(preds, targets, *, iou=0.5, score=0.3) -> float: ...

    The positional parameters name the inputs the metric takes (``MetricInputs``:
    ``preds``, ``baseline_preds``, ``data``/``targets``, ``ctx``, ``grid``, or ``inputs``
    whole), which also gives its kind (``inputs=`` is needed only with ``inputs`` whole,
    default ``predictions``). Keyword-only parameters become check keys (validated by
    their type hints, e.g. ``PositiveInt``). ``compares=True`` marks a model metric whose
    value already compares the variant with the baseline (``pair`` metrics always do).
    ``resample`` enables ``confidence:`` (bootstrap over images): ``RECOMPUTE``
    (classification data) or a ``Resampler`` that evaluates many image multisets at once.
    ``paired`` (model metrics) measures candidate and baseline together when a check's
    thresholds compare them (see ``PairedFn``); without it each variant is measured on its
    own. The types are in ``robustness_harness.metrics.base``.
    """

    def wrap(fn: MetricFn) -> MetricFn:
        # imported on use: the metric types' package registers the built-in metrics first
        # (so a user metric clashing with one is an error) and imports this module
        from robustness_harness.metrics.base import MetricInfo, kind_of, unknown_inputs

        for part, f in (("metric", fn), ("resample", resample), ("paired", paired)):
            bad = unknown_inputs(f) if callable(f) else []
            if bad:
                raise HarnessError(
                    f"metric '{name}': {part} function parameter '{bad[0]}' names no input",
                    field="register_metric",
                    hint="name inputs preds, baseline_preds, data (or targets), ctx, grid "
                    "or inputs; make check parameters keyword-only (after *)",
                )
        kind = kind_of(fn)
        if inputs is not None and kind is not None and inputs != kind:
            raise HarnessError(
                f"metric '{name}': inputs='{inputs}' but its parameters make it a {kind} metric",
                field="register_metric",
                hint="leave inputs= out: the parameters the function names give its kind",
            )
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
                inputs=inputs or kind or "predictions",
                cacheable=cacheable,
                compares=compares,
                resample=resample,
                paired=paired,
            ),
            replace=_same_function(name, fn),
        )
        return fn

    return wrap


def _same_function(name: str, fn: MetricFn) -> bool:
    """Whether ``name`` is registered by this very function (its module was imported
    again, as pytest does with conftest files): then re-registering replaces it."""
    if name not in METRICS:
        return False
    old = METRICS.get(name).fn
    return (old.__module__, old.__qualname__) == (fn.__module__, fn.__qualname__)


def register_compression(
    kind: StepKind,
    name: str,
    params: type[BaseModel] | None = None,
    uses: DataUse | Callable[[Any], DataUse | None] | None = None,
) -> Callable[[CompressFn], CompressFn]:
    """Register a compression method as ``{kind: {method: name, ...}}``.

    Its parameters are declared as a metric's are: keyword-only parameters with type hints
    (``fn(model, ctx, *, sparsity: Probability = 0.5) -> model``), validated when a suite
    loads and passed as keyword arguments. Parameters that need cross-field validation
    can instead be a pydantic model, ``params=Model``; then ``fn(model, params, ctx)``
    receives the validated model (the built-in methods do this).

    ``uses`` says which data the step reads: ``"train"``, ``"calibration"``, or a function
    of the step's params giving one of them or None (suites are checked for that data at
    load time, and the checkpoint key covers it). The types are in
    ``robustness_harness.compress.base``.
    """
    use_of = uses if callable(uses) else (lambda _params: uses)

    def wrap(fn: CompressFn) -> CompressFn:
        # imported on use, as in ``register_metric``: the built-in methods register first
        from robustness_harness.compress.base import MethodInfo, keyword_params_model

        model = params if params is not None else keyword_params_model(fn, name)
        info = MethodInfo(
            kind=kind, name=name, fn=fn, params=model, uses=use_of, keywords=params is None
        )
        METHODS.register(name, info)
        return fn

    return wrap


def register_model(name: str) -> Callable[[T], T]:
    """Register a model builder ``build(**kwargs) -> nn.Module`` (a detector) or a
    ``ModelEntry`` (task, embedded weights) as ``model: {name: ...}``. Packages can instead
    name it in the ``robustness_harness.models`` entry-point group."""
    return MODELS.decorator(name)


def register_dataset(name: str) -> Callable[[T], T]:
    """Register ``fn(root, **params) -> {split: data}`` as ``data: {name: ...}``. Packages
    can instead name it in the ``robustness_harness.datasets`` entry-point group."""
    return DATASETS.decorator(name)


metric = register_metric
"""``@metric(...)``: the name README examples and user code use for ``register_metric``."""

compression_method = register_compression
"""``@compression_method(...)``: the older name of ``register_compression``."""

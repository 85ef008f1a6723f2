"""A metric tester in torchmetrics' ``MetricTester`` habit: run a registered metric the way
the harness does (``METRICS.get(name)(MetricInputs(...), **params)``) on shared, seeded cases and
compare its value with a reference implementation, bit-exact or within a stated tolerance.

Each registered metric gets one ``Entry`` in ``tests/metrics/test_metric_references.py``:
a ``Reference`` (checked here), a ``CoveredBy`` (an existing reference test elsewhere,
named by path and function so the link cannot rot) or an ``Exempt`` with its reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from robustness_harness.inference.predictions import ClassPredictions, DetectionPredictions
from robustness_harness.metrics import METRICS
from robustness_harness.metrics.base import MetricInputs
from robustness_harness.metrics.context import CorruptionGrid
from tests.metrics.conftest import make_gt, make_preds, xyxy
from tests.metrics.hand_cases import Targets

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Reference:
    """``fn(*inputs, **params)`` computes the metric independently on a case of ``cases``.

    ``exact``: the reference is the same algorithm (bit-exact, NaN == NaN); otherwise
    values agree within ``abs_tol`` (stated with the reason in ``source``).
    """

    fn: Callable[..., Any]
    cases: str
    source: str
    params: Mapping[str, Any] = field(default_factory=dict)
    exact: bool = True
    abs_tol: float = 0.0


@dataclass(frozen=True)
class CoveredBy:
    """The reference check lives in an existing test: ``"tests/x.py::test_name"``."""

    test: str
    source: str


@dataclass(frozen=True)
class Exempt:
    """No reference implementation applies; ``reason`` says why."""

    reason: str


Entry = Reference | CoveredBy | Exempt


class ClassTargets:
    """A duck-typed classification set (what ``ClassTargets`` asks for)."""

    def __init__(self, image_ids: list[int], labels: np.ndarray, names: Sequence[str]) -> None:
        self.image_ids = image_ids
        self.class_names = list(names)
        self.categories = [{"id": 10 * (k + 1), "name": n} for k, n in enumerate(names)]
        self._labels = dict(zip(image_ids, labels.tolist(), strict=True))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def labels(self, image_ids: Any = None) -> np.ndarray:
        ids = self.image_ids if image_ids is None else image_ids
        return np.array([self._labels[i] for i in ids], np.int64)


NAMES = ("cat", "dog", "fox", "owl")


def _classification(seed: int, n: int = 300) -> tuple[ClassPredictions, ClassPredictions, Any]:
    """Candidate and baseline logits (baseline = candidate + noise, so some flips) for
    ``n`` images with every class present; predictions in another order than the data."""
    rng = np.random.default_rng(seed)
    k = len(NAMES)
    labels = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    base = rng.normal(size=(n, k)) * 1.5
    base[np.arange(n), labels] += 1.0
    cand = base + rng.normal(size=(n, k)) * 0.7
    ids = [int(i) for i in rng.permutation(10_000)[:n]]
    order = np.argsort(ids)
    data = ClassTargets([ids[i] for i in order], labels[order], NAMES)
    return (
        ClassPredictions(ids, cand.astype(np.float32)),
        ClassPredictions(ids, base.astype(np.float32)),
        data,
    )


def _box(rng: np.random.Generator, side: float) -> tuple[float, float, float, float]:
    x, y = rng.uniform(0, 640 - side), rng.uniform(0, 480 - side)
    return (round(x, 1), round(y, 1), side, round(side * rng.uniform(0.6, 1.4), 1))


def _detection(seed: int) -> tuple[DetectionPredictions, Targets]:
    """Six images, three categories, boxes small to large; predictions are jittered ground
    truth (some with the wrong class), missed objects and false positives, random scores."""
    rng = np.random.default_rng(seed)
    boxes: dict[int, list[Any]] = {}
    dets: dict[int, list[Any]] = {}
    for image_id in range(1, 7):
        gts = [
            (_box(rng, float(rng.choice([16, 48, 150]))), int(rng.integers(1, 4))) for _ in range(4)
        ]
        boxes[image_id] = gts if image_id != 6 else []
        dets[image_id] = []
        for bbox, cat in boxes[image_id]:
            if rng.random() < 0.2:
                continue  # missed
            jitter = rng.normal(0, bbox[2] * 0.08, 4)
            b = tuple(float(v) for v in np.asarray(xyxy(bbox)) + jitter)
            cat_out = cat if rng.random() < 0.85 else int(rng.integers(1, 4))
            dets[image_id].append((b, float(rng.uniform(0.05, 1.0)), cat_out))
        for _ in range(int(rng.integers(0, 3))):
            dets[image_id].append((xyxy(_box(rng, 40.0)), float(rng.uniform(0.05, 0.6)), 1))
    gt = make_gt(boxes, categories=(1, 2, 3))
    return make_preds(dets), Targets(gt)


def _grids(seed: int) -> tuple[CorruptionGrid, ...]:
    rng = np.random.default_rng(seed)
    families = {"gaussian_noise": "noise", "shot_noise": "noise", "fog": "weather", "blur": "blur"}

    def grid(clean: float, baseline: CorruptionGrid | None) -> CorruptionGrid:
        values = {(c, s): float(rng.uniform(0.1, clean)) for c in families for s in range(1, 6)}
        return CorruptionGrid(clean, values, families, baseline)

    base = grid(0.9, None)
    return base, grid(0.8, base)


@cache
def shared_cases() -> dict[str, list[tuple[Any, ...]]]:
    """The shared cases by input kind, built once (seeded): each a tuple of the metric's
    positional inputs."""
    cls = [_classification(seed) for seed in (0, 1)]
    grids = [g for seed in (0, 1) for g in _grids(seed)]
    return {
        "classification": [(cand, data) for cand, _, data in cls],
        "classification_pair": [(cand, base, data) for cand, base, data in cls],
        "detection": [_detection(seed) for seed in (0, 1, 2)],
        "corruption_grid": [(g,) for g in grids],
    }


INPUTS_OF_CASES = {
    "classification": "predictions",
    "classification_pair": "pair",
    "detection": "predictions",
    "corruption_grid": "corruption_grid",
}


def same(ours: Any, theirs: Any, *, exact: bool, abs_tol: float) -> bool:
    """Equal floats (NaN == NaN), or mappings with the same keys in order and equal values."""
    if isinstance(ours, Mapping):
        return (
            isinstance(theirs, Mapping)
            and list(ours) == list(theirs)
            and all(same(ours[k], theirs[k], exact=exact, abs_tol=abs_tol) for k in ours)
        )
    ours, theirs = float(ours), float(theirs)
    if math.isnan(ours) or math.isnan(theirs):
        return math.isnan(ours) and math.isnan(theirs)
    return ours == theirs if exact else math.isclose(ours, theirs, rel_tol=0, abs_tol=abs_tol)


class MetricTester:
    """Checks registered metrics against their ``Entry``."""

    def run_metric(self, name: str, inputs: Sequence[Any], params: Mapping[str, Any]) -> Any:
        """The metric's value as the harness computes it: one ``MetricInputs`` of a case's
        positional inputs (``(preds, data)``, ``(preds, baseline_preds, data)`` or
        ``(grid,)``), bound to the function's parameters by name."""
        if len(inputs) == 1:
            one = MetricInputs(grid=inputs[0])
        else:
            one = MetricInputs(
                data=inputs[-1], preds=inputs[0], baseline_preds=(inputs[1:-1] or [None])[0]
            )
        return METRICS.get(name)(one, **params).value

    def check(self, name: str, entry: Entry) -> int:
        """Assert the entry holds; returns the number of cases compared."""
        if isinstance(entry, Exempt):
            assert entry.reason.strip(), f"{name}: an exemption needs a reason"
            return 0
        if isinstance(entry, CoveredBy):
            path, _, test = entry.test.partition("::")
            text = (ROOT / path).read_text()
            assert f"def {test}(" in text, f"{name}: {entry.test} does not exist"
            return 0
        info = METRICS.get(name)
        assert info.inputs == INPUTS_OF_CASES[entry.cases], (name, info.inputs, entry.cases)
        cases = shared_cases()[entry.cases]
        for n, inputs in enumerate(cases):
            ours = self.run_metric(name, inputs, entry.params)
            theirs = entry.fn(*inputs, **entry.params)
            assert same(ours, theirs, exact=entry.exact, abs_tol=entry.abs_tol), (
                f"{name} differs from {entry.source} on {entry.cases} case {n}: "
                f"{ours!r} vs {theirs!r}"
            )
        return len(cases)

"""Every registered metric has a reference: checked here through ``MetricTester`` on shared
seeded cases, covered by a named reference test elsewhere, or exempt with a reason."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_accuracy

from robustness_harness.inference.predictions import ClassPredictions, DetectionPredictions
from robustness_harness.metrics import METRICS
from robustness_harness.metrics.context import CorruptionGrid
from robustness_harness.registry import register_metric
from tests.metrics.conftest import reference_eval, reference_per_class
from tests.metrics.hand_cases import Targets
from tests.metrics.metric_tester import (
    ClassTargets,
    CoveredBy,
    Entry,
    Exempt,
    MetricTester,
    Reference,
    shared_cases,
)
from tests.metrics.test_calibration import torchmetrics_ece

# ------------------------------------------------------------------ references


def _in_data_order(preds: ClassPredictions, data: ClassTargets) -> np.ndarray:
    row = {image_id: n for n, image_id in enumerate(preds.image_ids)}
    return preds.logits[[row[i] for i in data.image_ids]]


def _tm_accuracy(preds: ClassPredictions, data: ClassTargets, *, average: str) -> Any:
    logits = torch.from_numpy(_in_data_order(preds, data))
    target = torch.from_numpy(data.labels())
    return multiclass_accuracy(logits, target, num_classes=data.num_classes, average=average)


def ref_accuracy(preds: ClassPredictions, data: ClassTargets) -> float:
    return float(_tm_accuracy(preds, data, average="micro"))


def ref_per_class_accuracy(preds: ClassPredictions, data: ClassTargets) -> dict[str, float]:
    values = _tm_accuracy(preds, data, average="none").tolist()
    return dict(zip(data.class_names, values, strict=True))


def ref_ece(preds: ClassPredictions, data: ClassTargets, *, bins: int) -> float:
    probs = torch.softmax(torch.from_numpy(_in_data_order(preds, data)).double(), 1)
    return torchmetrics_ece(probs.float().numpy(), data.labels(), bins)


def _per_class_numpy(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    hits = logits.argmax(1) == labels
    return np.bincount(labels[hits], minlength=k) / np.bincount(labels, minlength=k)


def ref_flip_rate(preds: ClassPredictions, base: ClassPredictions, data: ClassTargets) -> float:
    a, b = _in_data_order(preds, data), _in_data_order(base, data)
    return float(np.count_nonzero(a.argmax(1) != b.argmax(1)) / len(a))


def ref_class_accuracy_delta(
    preds: ClassPredictions, base: ClassPredictions, data: ClassTargets
) -> float:
    labels, k = data.labels(), data.num_classes
    cand = _per_class_numpy(_in_data_order(preds, data), labels, k)
    return float(np.max(_per_class_numpy(_in_data_order(base, data), labels, k) - cand))


def ref_confidence_shift(
    preds: ClassPredictions, base: ClassPredictions, data: ClassTargets
) -> float:
    cand = torch.softmax(torch.from_numpy(_in_data_order(preds, data)).double(), 1)
    ref = torch.softmax(torch.from_numpy(_in_data_order(base, data)).double(), 1)
    y = ref.argmax(1, keepdim=True)
    return float((cand.gather(1, y) - ref.gather(1, y)).abs().mean())


COCO_STATS = {"map": 0, "ap50": 1, "ap75": 2, "ap_small": 3, "ap_medium": 4, "ap_large": 5}
COCO_STATS["ar100"] = 8


def _coco(preds: DetectionPredictions, targets: Targets) -> Any:
    return reference_eval(targets.coco_gt(), preds.to_coco_results(), targets.image_ids)


def ref_coco_stat(index: int) -> Any:
    def ref(preds: DetectionPredictions, targets: Targets) -> float:
        value = float(_coco(preds, targets).stats[index])
        return math.nan if value == -1 else value  # the harness reports no-data as NaN

    return ref


def ref_per_class_ap(iou_index: int | slice) -> Any:
    def ref(preds: DetectionPredictions, targets: Targets) -> dict[str, float]:
        names = [c["name"] for c in targets.coco_gt()["categories"]]
        return dict(zip(names, reference_per_class(_coco(preds, targets), iou_index), strict=True))

    return ref


def _errors(grid: CorruptionGrid, corruption: str) -> float:
    return sum(1.0 - v for (c, _), v in grid.values.items() if c == corruption)


def ref_mpc(grid: CorruptionGrid) -> float:
    return float(np.mean(list(grid.values.values())))


def ref_rpc(grid: CorruptionGrid) -> float:
    return ref_mpc(grid) / grid.clean


def ref_ce(grid: CorruptionGrid, *, corruption: str) -> float:
    if grid.baseline is None:
        return 1.0
    return _errors(grid, corruption) / _errors(grid.baseline, corruption)


def ref_mce(grid: CorruptionGrid) -> float:
    return float(np.mean([ref_ce(grid, corruption=c) for c in grid.families]))


# ------------------------------------------------------------------ the table

FLOAT = "float rounding (1e-12): the reference sums in another order"
TM = "torchmetrics computes in float32 (1e-6)"
HENDRYCKS = "Hendrycks & Dietterich 2019 formulas in numpy"

REFERENCES: dict[str, Entry] = {
    "accuracy": Reference(
        ref_accuracy,
        "classification",
        f"torchmetrics multiclass_accuracy; {TM}",
        exact=False,
        abs_tol=1e-6,
    ),
    "per_class_accuracy": Reference(
        ref_per_class_accuracy,
        "classification",
        f"torchmetrics average='none'; {TM}",
        exact=False,
        abs_tol=1e-6,
    ),
    "ece": Reference(
        ref_ece,
        "classification",
        f"torchmetrics MulticlassCalibrationError; {TM}",
        params={"bins": 15},
        exact=False,
        abs_tol=1e-6,
    ),
    "flip_rate": Reference(ref_flip_rate, "classification_pair", "numpy argmax count"),
    "class_accuracy_delta": Reference(
        ref_class_accuracy_delta,
        "classification_pair",
        f"numpy bincount; {FLOAT}",
        exact=False,
        abs_tol=1e-12,
    ),
    "confidence_shift": Reference(
        ref_confidence_shift,
        "classification_pair",
        f"torch.softmax float64; {FLOAT}",
        exact=False,
        abs_tol=1e-12,
    ),
    **{
        name: Reference(ref_coco_stat(index), "detection", f"pycocotools COCOeval stats[{index}]")
        for name, index in COCO_STATS.items()
    },
    "per_class_ap": Reference(
        ref_per_class_ap(slice(None)), "detection", "pycocotools precision (detectron2 per-class)"
    ),
    "per_class_ap50": Reference(
        ref_per_class_ap(0), "detection", "pycocotools precision at IoU 0.5"
    ),
    "mpc": Reference(
        ref_mpc, "corruption_grid", f"{HENDRYCKS}; {FLOAT}", exact=False, abs_tol=1e-12
    ),
    "rpc": Reference(
        ref_rpc, "corruption_grid", f"{HENDRYCKS}; {FLOAT}", exact=False, abs_tol=1e-12
    ),
    "ce": Reference(
        ref_ce,
        "corruption_grid",
        f"{HENDRYCKS}; {FLOAT}",
        params={"corruption": "fog"},
        exact=False,
        abs_tol=1e-12,
    ),
    "mce": Reference(
        ref_mce, "corruption_grid", f"{HENDRYCKS}; {FLOAT}", exact=False, abs_tol=1e-12
    ),
    "fgsm_accuracy": CoveredBy(
        "tests/unit/test_attacks.py::test_fgsm_accuracy_equals_torchattacks",
        "torchattacks.FGSM run by hand, bit-exact (builds a small CNN)",
    ),
    "pgd_accuracy": CoveredBy(
        "tests/unit/test_attacks.py::test_pgd_accuracy_equals_torchattacks",
        "torchattacks.PGD run by hand with the same seeds, bit-exact (builds a small CNN)",
    ),
    "latency_ms": CoveredBy(
        "tests/metrics/test_latency.py::test_stats_match_numpy",
        "a wall-clock measurement of the model has no reference value; its statistics "
        "equal numpy percentiles and the loop is checked on a scripted clock",
    ),
    "size": CoveredBy(
        "tests/metrics/test_size.py::test_params_match_numel",
        "measures the model itself: params equal sum(p.numel()), bytes the checkpoint file",
    ),
    "pgd_map": Exempt(
        "no reference PGD for detectors exists (torchattacks attacks classifiers only); the "
        "attack images share attack_classifier's algorithm, checked bit-exact against "
        "torchattacks in tests/unit/test_attacks.py, and the score is map (pycocotools above)"
    ),
    "saliency_change": Exempt(
        "no library computes this distance between vanilla-gradient saliency maps; it is "
        "checked against closed-form maps of linear models in test_stability.py"
    ),
}


def missing_references(names: list[str], table: dict[str, Entry]) -> list[str]:
    """Registered names without an entry."""
    return [n for n in names if n not in table]


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_metric_matches_its_reference(name: str) -> None:
    compared = MetricTester().check(name, REFERENCES[name])
    if isinstance(REFERENCES[name], Reference):
        assert compared > 0


def test_every_registered_metric_has_a_reference() -> None:
    missing = missing_references(METRICS.names(), REFERENCES)
    assert not missing, (
        f"registered metrics without a reference or exemption in {__name__}: {missing}"
    )
    stale = sorted(set(REFERENCES) - set(METRICS.names()))
    assert not stale, f"entries for metrics no longer registered: {stale}"


@pytest.fixture
def dummy_metric() -> Iterator[str]:
    """A metric registered for one test and removed after it."""
    name = "dummy_metric_without_reference"

    @register_metric(name, task="classification")
    def dummy(preds: ClassPredictions, data: Any) -> float:
        """A metric nobody wrote a reference for."""
        return 0.0

    try:
        yield name
    finally:
        METRICS._items.pop(name, None)


def test_a_metric_without_reference_is_named(dummy_metric: str) -> None:
    assert missing_references(METRICS.names(), REFERENCES) == [dummy_metric]
    with pytest.raises(AssertionError, match=dummy_metric):
        test_every_registered_metric_has_a_reference()


def test_tester_catches_a_wrong_reference() -> None:
    wrong = Reference(lambda preds, data: ref_accuracy(preds, data) + 1e-3, "classification", "")
    with pytest.raises(AssertionError, match="accuracy differs"):
        MetricTester().check("accuracy", wrong)
    with pytest.raises(AssertionError, match="does not exist"):
        MetricTester().check("size", CoveredBy("tests/metrics/test_size.py::test_nope", ""))


def test_dummy_metric_was_unregistered() -> None:
    assert "dummy_metric_without_reference" not in METRICS.names()


def test_shared_cases_are_built_once_and_nontrivial() -> None:
    assert shared_cases() is shared_cases()
    cand, base, _ = shared_cases()["classification_pair"][0]
    assert 0 < ref_flip_rate(cand, base, shared_cases()["classification_pair"][0][2]) < 0.5
    for preds, targets in shared_cases()["detection"]:
        assert 0 < ref_coco_stat(0)(preds, targets) < 1

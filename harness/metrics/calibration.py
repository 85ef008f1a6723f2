"""Calibration: expected calibration error (ECE) of classifiers and detectors (D-ECE).

ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)| over bins B_b of the n confidences, where
acc is the fraction correct and conf the mean confidence of a bin.

Binning (``bins`` = B):

* ``equal_width``: bin k (k = 0..B-1) holds the confidences c with
  ``edges[k] <= c < edges[k+1]``, ``edges = np.arange(B + 1) / B`` in float64; a
  confidence of exactly 1.0 forms one more bin of its own. This is torchmetrics'
  convention (``torch.bucketize(conf, linspace(0, 1, B + 1), right=True) - 1``), so a
  confidence on an edge belongs to the bin that starts there.
* ``equal_mass``: the confidences sorted ascending (ties: incorrect before correct, so
  the result does not depend on input order) are cut into B consecutive groups by
  ``np.array_split``: sizes differ by at most one, the first ``n % B`` groups are one
  larger, groups are empty when n < B, and equal confidences may fall into two groups.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.errors import SpecError
from robustness_harness.inference.predictions import ClassPredictions, DetectionPredictions
from robustness_harness.metrics.base import RECOMPUTE, MetricResult, PositiveInt, Probability
from robustness_harness.metrics.classification import aligned
from robustness_harness.metrics.detection import CocoTargets, coco_match
from robustness_harness.registry import register_metric

Binning = Literal["equal_width", "equal_mass"]
BinRow = dict[str, float | int | None]


def expected_calibration_error(
    confidences: ArrayLike,
    correct: ArrayLike,
    *,
    bins: int = 15,
    binning: Binning = "equal_width",
) -> tuple[float, list[BinRow]]:
    """ECE of ``confidences`` (n,) in [0, 1] against ``correct`` (n,) bool, and the bins.

    Each bin row has ``lo``, ``hi`` (edges for equal width, smallest and largest member
    for equal mass), ``count``, ``acc`` and ``conf`` (None for an empty bin), in order
    (a reliability diagram). ECE is NaN when n = 0.
    """
    conf, hit = _check_inputs(confidences, correct)
    _check_binning(bins, binning)
    width = binning == "equal_width"
    groups = _equal_width(conf, bins) if width else _equal_mass(conf, hit, bins)
    table = [_row(lo, hi, conf[idx], hit[idx]) for lo, hi, idx in groups]
    if conf.size == 0:
        return math.nan, table
    total = sum(
        len(idx) * abs(float(hit[idx].mean()) - float(conf[idx].mean()))
        for _, _, idx in groups
        if len(idx)
    )
    return total / conf.size, table


def _check_inputs(confidences: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidences, dtype=np.float64)
    hit = np.asarray(correct)
    if conf.ndim != 1 or hit.shape != conf.shape:
        raise ValueError(
            f"confidences and correct must be 1-d of one length, got {conf.shape}, {hit.shape}"
        )
    if not np.all((conf >= 0.0) & (conf <= 1.0)):  # also rejects NaN
        raise ValueError("confidences must be finite numbers in [0, 1]")
    return conf, hit.astype(bool)


def _check_binning(bins: int, binning: str) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise SpecError(
            f"bins must be an integer >= 1, got {bins!r}", field="bins", hint="bins: 15"
        )
    if binning not in ("equal_width", "equal_mass"):
        raise SpecError(
            f"binning must be equal_width or equal_mass, got {binning!r}",
            field="binning",
            hint="binning: equal_width",
        )


def _equal_width(conf: np.ndarray, bins: int) -> list[tuple[float, float, np.ndarray]]:
    """Bins [k/B, (k+1)/B) for k < B, then {1.0}; (lo, hi, member indices) each."""
    edges = np.arange(bins + 1, dtype=np.float64) / bins
    index = np.searchsorted(edges, conf, side="right") - 1
    out = [(float(edges[k]), float(edges[k + 1]), np.flatnonzero(index == k)) for k in range(bins)]
    out.append((1.0, 1.0, np.flatnonzero(index == bins)))
    return out


def _equal_mass(
    conf: np.ndarray, hit: np.ndarray, bins: int
) -> list[tuple[float | None, float | None, np.ndarray]]:
    """``np.array_split`` of the order sorted by (confidence, correct)."""
    order = np.lexsort((hit, conf))
    return [
        (float(conf[p].min()), float(conf[p].max()), p) if p.size else (None, None, p)
        for p in np.array_split(order, bins)
    ]


def _row(lo: float | None, hi: float | None, conf: np.ndarray, hit: np.ndarray) -> BinRow:
    n = int(conf.size)
    return {
        "lo": lo,
        "hi": hi,
        "count": n,
        "acc": float(hit.mean()) if n else None,
        "conf": float(conf.mean()) if n else None,
    }


def detection_confidences(
    preds: DetectionPredictions, data: CocoTargets, *, score_threshold: float, iou: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scores ≥ ``score_threshold`` of the detections COCO evaluates, and whether each
    matched a ground truth at IoU ≥ ``iou`` (``coco_match``; detections matched to a
    crowd region are left out)."""
    ids = list(data.image_ids)
    m = coco_match(data.coco_gt(), preds.subset(ids), iou=iou, image_ids=ids)
    keep = m.dt_scores >= score_threshold
    return m.dt_scores[keep], m.dt_matched[keep]


def _classification_confidences(
    preds: ClassPredictions, data: ClassificationData
) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 softmax probability (float64) and whether the top-1 class is the label."""
    rows = aligned(preds, data)
    return rows.confidence, rows.top1 == data.labels(data.image_ids)


@register_metric("ece", task="any", higher_is_better=False, resample=RECOMPUTE)
def ece(
    preds: ClassPredictions | DetectionPredictions,
    data: Any,
    *,
    bins: PositiveInt = 15,
    binning: Binning = "equal_width",
    score_threshold: Probability = 0.3,
    iou: Probability = 0.5,
) -> MetricResult:
    """Expected calibration error of top-1 confidence (classifiers) or D-ECE (detectors).

    Classifiers: every image, confidence = top-1 softmax probability, correct = top-1 is
    the label. Detectors: detections with score ≥ ``score_threshold``, confidence = score,
    correct = matched to a ground truth of its category at IoU ≥ ``iou`` by COCO's
    greedy matching (area all, maxDets 100; matches to crowd regions are left out).
    Details: ``bins`` (rows of ``expected_calibration_error``) and ``n``.
    """
    if isinstance(preds, ClassPredictions):
        conf, hit = _classification_confidences(preds, data)
    else:
        conf, hit = detection_confidences(preds, data, score_threshold=score_threshold, iou=iou)
    value, table = expected_calibration_error(conf, hit, bins=bins, binning=binning)
    details = {"bins": table, "n": int(conf.size), "binning": binning}
    note = "" if conf.size else "no predictions to calibrate"
    return MetricResult(value, details, note)

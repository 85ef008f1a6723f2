"""COCO bbox evaluation with exact pycocotools semantics, and the detection metrics.

pycocotools' ``COCOeval`` semantics; the engine is a bit-exact backend
(``robustness_harness.metrics.coco_backend``: ultrafast-pycocotools by default,
``HARNESS_COCO_BACKEND=pycocotools`` for the reference). This module converts
predictions to COCO results exactly as a json round trip would, fills what COCO expects
of ground truth, handles the inputs ``loadRes`` crashes on, validates ids (those formats
are ``coco_format``'s, shared with ``coco_resample``), and memoizes evaluations.

Ground truth is normalised like this (documented behaviour):

* the dict is round-tripped through canonical JSON, so numbers are exactly what
  ``COCO(json_file)`` would read and the caller's dict is never mutated;
* an annotation without ``area`` gets ``bbox[2] * bbox[3]``; without ``iscrowd``, 0;
* annotation ids: if every annotation has one, they must be unique integers ≥ 1
  (pycocotools counts a match to a ground truth with id 0 as a false positive); if
  none has one, they become 1..N in list order; a mix is an error.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from robustness_harness.errors import DataError
from robustness_harness.inference.predictions import DetectionPredictions
from robustness_harness.metrics.coco_backend import CocoBackend, get_backend
from robustness_harness.metrics.coco_format import (
    GT_FINGERPRINT_KEY,
    CocoEvalResult,
    bbox_eval,
    canonical_gt_json,
    check_image_ids,
    check_predictions,
    gt_fingerprint,
    normalize_gt,
    results_coco,
)
from robustness_harness.metrics.coco_memo import CocoMemo, coco_memo
from robustness_harness.metrics.coco_resample import per_class_resampler, summary_resampler
from robustness_harness.registry import register_metric


def coco_evaluate(
    gt: dict[str, Any],
    preds: DetectionPredictions,
    *,
    image_ids: Sequence[int] | None = None,
    backend: str | None = None,
    memo: CocoMemo | None = None,
) -> CocoEvalResult:
    """Run ``COCOeval(gt, results, "bbox")`` with default parameters.

    ``gt`` is a COCO dict (images, annotations, categories); ``image_ids`` (default:
    all gt images) become ``params.imgIds``. Results come from
    ``preds.to_coco_results()`` in that order. ``backend`` names the engine (default
    ``$HARNESS_COCO_BACKEND``, else ultrafast; all give pycocotools' numbers). Raises
    ``DataError`` for predictions on images or categories absent from ``gt``, non-finite
    values, or malformed ``gt``. With a ``memo`` (``coco_memo(targets)``), results are
    kept per (backend, gt content, predictions, image ids).
    """
    engine = get_backend(backend)
    gt_fp, canonical = gt_fingerprint(gt)
    img_key = None if image_ids is None else tuple(sorted({int(i) for i in image_ids}))

    def evaluate() -> CocoEvalResult:
        reuse = memo if not engine.is_reference else None
        dataset = _dataset(gt, gt_fp, canonical, reuse)
        check_image_ids(img_key, dataset)
        rows = check_predictions(preds, dataset)
        return _run_cocoeval(engine, dataset, gt_fp, preds, rows, img_key, reuse)

    if memo is None:
        return evaluate()
    return memo.evaluations.get_or_make((engine.name, gt_fp, preds.fingerprint, img_key), evaluate)


def _dataset(
    gt: dict[str, Any], fp: str, canonical: str | None, memo: CocoMemo | None
) -> dict[str, Any]:
    """The normalised private copy of ``gt``; with a ``memo``, one per fingerprint."""

    def normalized() -> dict[str, Any]:
        return normalize_gt(json.loads(canonical or canonical_gt_json(gt)))

    return normalized() if memo is None else memo.ground_truth.get_or_make(fp, normalized)


# ---------------------------------------------------------------------- COCOeval


def _run_cocoeval(
    engine: CocoBackend,
    dataset: dict[str, Any],
    gt_fp: str,
    preds: DetectionPredictions,
    rows: np.ndarray,
    img_key: tuple[int, ...] | None,
    memo: CocoMemo | None = None,
) -> CocoEvalResult:
    """``COCOeval(...).evaluate(); accumulate(); summarize()`` on ``engine``.

    pycocotools gets dict results (``results_coco`` when there are none, which
    ``loadRes`` rejects); fast backends get ``rows``, the array form of the same results.
    """
    coco_gt = engine.ground_truth(dataset, gt_fp, memo)
    with contextlib.redirect_stdout(io.StringIO()):
        if engine.is_reference:
            results = preds.to_coco_results()
            coco_dt = coco_gt.loadRes(results) if results else results_coco(coco_gt, results)
        else:
            coco_dt = coco_gt.loadRes(rows)
    stats, precision, cat_ids = engine.evaluate(coco_gt, coco_dt, img_key)
    names = [str(coco_gt.cats[c].get("name", c)) for c in cat_ids]
    stats.flags.writeable = False
    precision.flags.writeable = False
    return CocoEvalResult(stats, precision, cat_ids, names)


# ----------------------------------------------------------------------- metrics


class CocoTargets(Protocol):
    """What the detection metrics need of a dataset (duck-typed)."""

    @property
    def image_ids(self) -> list[int]: ...

    def coco_gt(self) -> dict[str, Any]: ...


def evaluate_targets(
    preds: DetectionPredictions, targets: CocoTargets, *, backend: str | None = None
) -> CocoEvalResult:
    """``coco_evaluate`` of ``preds`` on the images of ``targets`` (with ``backend``).

    A ``fingerprint`` attribute of ``targets`` (``CocoDetectionData`` has one) stands for
    the gt content, so repeated evaluations skip hashing the ground truth.
    """
    gt = targets.coco_gt()
    fingerprint = getattr(targets, "fingerprint", None)
    if isinstance(fingerprint, str) and GT_FINGERPRINT_KEY not in gt:
        gt = {**gt, GT_FINGERPRINT_KEY: f"targets:{fingerprint}"}
    return coco_evaluate(
        gt, preds, image_ids=list(targets.image_ids), backend=backend, memo=coco_memo(targets)
    )


def _stat(preds: DetectionPredictions, targets: CocoTargets, index: int) -> float:
    """``stats[index]``; NaN where pycocotools reports -1 (no ground truth in range)."""
    value = float(evaluate_targets(preds, targets).stats[index])
    return math.nan if value == -1 else value


@register_metric("map", task="detection", resample=summary_resampler())
def map_(preds: DetectionPredictions, targets: CocoTargets) -> float:
    """COCO AP@[.5:.95], area all, maxDets 100 (COCOeval stats[0])."""
    return _stat(preds, targets, 0)


@register_metric("ap50", task="detection", resample=summary_resampler(iou=0.5))
def ap50(preds: DetectionPredictions, targets: CocoTargets) -> float:
    """COCO AP@0.5, area all, maxDets 100 (COCOeval stats[1])."""
    return _stat(preds, targets, 1)


@register_metric("ap75", task="detection", resample=summary_resampler(iou=0.75))
def ap75(preds: DetectionPredictions, targets: CocoTargets) -> float:
    """COCO AP@0.75, area all, maxDets 100 (COCOeval stats[2])."""
    return _stat(preds, targets, 2)


@register_metric("ap_small", task="detection", resample=summary_resampler(area="small"))
def ap_small(preds: DetectionPredictions, targets: CocoTargets) -> float:
    """COCO AP@[.5:.95] of objects with area < 32² (COCOeval stats[3])."""
    return _stat(preds, targets, 3)


@register_metric("ap_medium", task="detection", resample=summary_resampler(area="medium"))
def ap_medium(preds: DetectionPredictions, targets: CocoTargets) -> float:
    """COCO AP@[.5:.95] of objects with area in 32²..96² (COCOeval stats[4])."""
    return _stat(preds, targets, 4)


@register_metric("ap_large", task="detection", resample=summary_resampler(area="large"))
def ap_large(preds: DetectionPredictions, targets: CocoTargets) -> float:
    """COCO AP@[.5:.95] of objects with area > 96² (COCOeval stats[5])."""
    return _stat(preds, targets, 5)


@register_metric("ar100", task="detection", resample=summary_resampler(ap=False))
def ar100(preds: DetectionPredictions, targets: CocoTargets) -> float:
    """COCO AR@[.5:.95], area all, maxDets 100 (COCOeval stats[8])."""
    return _stat(preds, targets, 8)


@register_metric("per_class_ap", task="detection", per_class=True, resample=per_class_resampler())
def per_class_ap(preds: DetectionPredictions, targets: CocoTargets) -> dict[str, float]:
    """COCO AP@[.5:.95] per class name (NaN for a class without ground truth)."""
    return evaluate_targets(preds, targets).ap_per_class()


@register_metric(
    "per_class_ap50",
    task="detection",
    per_class=True,
    resample=per_class_resampler(iou_50=True),
)
def per_class_ap50(preds: DetectionPredictions, targets: CocoTargets) -> dict[str, float]:
    """COCO AP@0.5 per class name (NaN for a class without ground truth)."""
    return evaluate_targets(preds, targets).ap50_per_class()


# ---------------------------------------------------------------------- matching


@dataclass(frozen=True)
class CocoMatches:
    """COCO's greedy detection-to-ground-truth matching at one IoU threshold.

    Exactly what ``COCOeval.evaluateImg`` decides (area all, maxDets 100): per image and
    category, detections by descending score (the 100 highest) each take the unmatched
    ground truth of highest IoU ≥ ``iou``, non-crowd before crowd.

    Detections (D,): every evaluated one except the ignored ones (matched to a crowd
    region); ``dt_matched`` says whether it matched a ground truth. Ground truth (G,):
    every non-ignored (non-crowd) annotation in ascending annotation id;
    ``gt_match_scores`` is the score of the detection matched to it, ``-inf`` if none.
    """

    dt_image_ids: np.ndarray
    dt_category_ids: np.ndarray
    dt_scores: np.ndarray
    dt_matched: np.ndarray
    gt_ids: np.ndarray
    gt_image_ids: np.ndarray
    gt_category_ids: np.ndarray
    gt_match_scores: np.ndarray


def coco_match(
    gt: dict[str, Any],
    preds: DetectionPredictions,
    *,
    iou: float = 0.5,
    image_ids: Sequence[int] | None = None,
) -> CocoMatches:
    """Run ``COCOeval.evaluate`` with ``iouThrs=[iou]``, area all, maxDets 100, and
    read the matches from ``evalImgs`` (``dtMatches``, ``dtIgnore``, ``gtMatches``).

    ``gt`` and ``image_ids`` as for ``coco_evaluate`` (same validation and errors).
    """
    if not 0.0 < iou <= 1.0:
        raise DataError(f"iou must be in (0, 1], got {iou}", field="iou", hint="e.g. iou: 0.5")
    img_key = None if image_ids is None else tuple(sorted({int(i) for i in image_ids}))
    dataset = normalize_gt(json.loads(canonical_gt_json(gt)))
    ev = bbox_eval(dataset, preds, img_key)
    ev.params.iouThrs = np.array([float(iou)])
    ev.params.areaRng = [ev.params.areaRng[0]]  # all: [0, 1e10]
    ev.params.areaRngLbl = ["all"]
    ev.params.maxDets = [100]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
    score_of = {int(i): float(a["score"]) for i, a in ev.cocoDt.anns.items()}
    return _collect_matches([e for e in ev.evalImgs if e is not None], score_of)


def _collect_matches(evals: list[dict[str, Any]], score_of: dict[int, float]) -> CocoMatches:
    """Flatten ``evalImgs`` entries (one IoU threshold) into a ``CocoMatches``."""
    dt: list[tuple[int, int, float, bool]] = []
    gt: list[tuple[int, int, int, float]] = []
    for e in evals:
        img, cat = int(e["image_id"]), int(e["category_id"])
        for d, score in enumerate(e["dtScores"]):
            if not e["dtIgnore"][0, d]:
                dt.append((img, cat, float(score), bool(e["dtMatches"][0, d] > 0)))
        for g, gt_id in enumerate(e["gtIds"]):
            if not e["gtIgnore"][g]:
                det = int(e["gtMatches"][0, g])
                gt.append((int(gt_id), img, cat, score_of[det] if det > 0 else -math.inf))
    gt.sort()
    d_cols = list(zip(*dt, strict=True)) if dt else [(), (), (), ()]
    g_cols = list(zip(*gt, strict=True)) if gt else [(), (), (), ()]
    return CocoMatches(
        dt_image_ids=np.asarray(d_cols[0], np.int64),
        dt_category_ids=np.asarray(d_cols[1], np.int64),
        dt_scores=np.asarray(d_cols[2], np.float64),
        dt_matched=np.asarray(d_cols[3], bool),
        gt_ids=np.asarray(g_cols[0], np.int64),
        gt_image_ids=np.asarray(g_cols[1], np.int64),
        gt_category_ids=np.asarray(g_cols[2], np.int64),
        gt_match_scores=np.asarray(g_cols[3], np.float64),
    )

"""CocoPool re-accumulates COCOeval results on image multisets, bit-exact with pycocotools."""

from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from robustness_harness.inference.predictions import DetectionPredictions, Detections
from robustness_harness.metrics.coco_resample import (
    CocoPool,
    per_class_resampler,
    summarize,
    summary_resampler,
)
from robustness_harness.metrics.detection import coco_evaluate

N_IMAGES = 14
CATEGORIES = [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}, {"id": 5, "name": "train"}]


def _dataset(ties: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ground truth and results with crowd regions, all area ranges, a class without
    ground truth, an empty image, >100 detections in one image, and (``ties``) score
    ties within and across images (scores rounded to one decimal)."""
    rng = np.random.default_rng(0)
    images = [{"id": 3 * i + 2, "width": 640, "height": 480} for i in range(N_IMAGES)]
    anns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for n, img in enumerate(images):
        if n == 4:
            continue  # no ground truth and no detections
        for _ in range(rng.integers(0, 5)):
            w, h = rng.uniform(8, 150, size=2)
            x, y = rng.uniform(0, 400), rng.uniform(0, 300)
            cat = int(rng.choice([1, 2]))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(rng.random() < 0.1),
                }
            )
            for _ in range(rng.integers(0, 3)):  # near-duplicates of the box
                jitter = rng.normal(0, 0.15 * min(w, h), size=4)
                box = [
                    x + jitter[0],
                    y + jitter[1],
                    max(1.0, w + jitter[2]),
                    max(1.0, h + jitter[3]),
                ]
                results.append(_result(img["id"], cat, box, rng, ties))
        for _ in range(130 if n == 7 else rng.integers(0, 6)):  # false positives
            box = [*rng.uniform(0, 500, size=2), *rng.uniform(5, 120, size=2)]
            results.append(_result(img["id"], int(rng.choice([1, 2, 5])), box, rng, ties))
    gt = {"images": images, "annotations": anns, "categories": CATEGORIES}
    return gt, results


def _result(
    image_id: int, cat: int, box: list[float], rng: np.random.Generator, ties: bool
) -> dict[str, Any]:
    score = float(rng.uniform(0.05, 1.0))
    score = round(score, 1) if ties else score
    return {
        "image_id": image_id,
        "category_id": cat,
        "bbox": [float(v) for v in box],
        "score": score,
    }


def _cocoeval(gt: dict[str, Any], results: list[dict[str, Any]]) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes([dict(r) for r in results]), "bbox")
        ev.evaluate()
    return ev


def _finish(ev: COCOeval) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
        ev.summarize()
    return ev


def _duplicated(gt: dict[str, Any], results: list[dict[str, Any]], counts: np.ndarray) -> tuple:
    """The dataset with image k present counts[k] times (copy j of image i gets id
    10 * i + j, so copies are adjacent in id order)."""
    by_id = {img["id"]: c for img, c in zip(gt["images"], counts, strict=True)}
    images, anns, res = [], [], []
    for img in gt["images"]:
        images += [{**img, "id": 10 * img["id"] + j} for j in range(by_id[img["id"]])]
    for ann in gt["annotations"]:
        for j in range(by_id[ann["image_id"]]):
            anns.append({**ann, "id": 10 * ann["id"] + j, "image_id": 10 * ann["image_id"] + j})
    for img in gt["images"]:  # results image by image, copies in the same relative order
        mine = [r for r in results if r["image_id"] == img["id"]]
        for j in range(by_id[img["id"]]):
            res += [{**r, "image_id": 10 * img["id"] + j} for r in mine]
    return {**gt, "images": images, "annotations": anns}, res


def test_identity_resample_is_bit_exact() -> None:
    gt, results = _dataset()
    ev = _cocoeval(gt, results)
    pool = CocoPool(ev)
    precision, recall = pool.accumulate(np.ones(N_IMAGES, np.int64))
    _finish(ev)
    assert np.array_equal(precision, ev.eval["precision"])
    assert np.array_equal(recall, ev.eval["recall"])
    assert (precision[:, :, 2] == -1).all()  # 'train' has no ground truth
    assert summarize(precision, recall, ev.params) == ev.stats[0]
    assert summarize(precision, recall, ev.params, iou=0.75) == ev.stats[2]
    assert summarize(precision, recall, ev.params, area="small") == ev.stats[3]
    assert summarize(precision, recall, ev.params, ap=False) == ev.stats[8]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_duplicates_equal_pycocotools_on_a_duplicated_dataset(seed: int) -> None:
    gt, results = _dataset()
    counts = np.random.default_rng(seed).integers(0, 4, size=N_IMAGES)
    counts[7] = 2  # the image with >100 detections is drawn twice
    pool = CocoPool(_cocoeval(gt, results))
    precision, recall = pool.accumulate(counts)
    ref = _finish(_cocoeval(*_duplicated(gt, results, counts)))
    assert np.array_equal(precision, ref.eval["precision"])
    assert np.array_equal(recall, ref.eval["recall"])
    assert summarize(precision, recall, ref.params) == ref.stats[0]


@pytest.mark.parametrize("ties", [False, True])
def test_batches_equal_pycocotools(ties: bool) -> None:
    """``accumulate_many``: weighted runs without ties, pooling per resample with ties."""
    gt, results = _dataset(ties)
    pool = CocoPool(_cocoeval(gt, results))
    rng = np.random.default_rng(4)
    counts = np.vstack([np.ones(N_IMAGES, np.int64), rng.integers(0, 4, size=(3, N_IMAGES))])
    precision, recall = pool.accumulate_many(counts, area=0, max_det=2)
    weighted = [pool._order(k, 0, 100) is not None for k in range(len(CATEGORIES))]
    assert all(weighted) if not ties else not any(weighted[:2])
    for b, row in enumerate(counts):
        ref = _finish(_cocoeval(*_duplicated(gt, results, row)))
        assert np.array_equal(precision[b], ref.eval["precision"][:, :, :, 0, 2])
        assert np.array_equal(recall[b], ref.eval["recall"][:, :, 0, 2])


def test_naive_weighting_would_differ_but_pooling_does_not() -> None:
    """Two detections of one image with equal scores (one hit, one miss), drawn twice:
    pycocotools interleaves the copies (hit, miss, hit, miss), which a weighted curve
    cannot express; the pool matches it."""
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 50, 50],
                "area": 2500,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 2,
                "category_id": 1,
                "bbox": [0, 0, 50, 50],
                "area": 2500,
                "iscrowd": 0,
            },
        ],
        "categories": [{"id": 1, "name": "a"}],
    }
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [60, 60, 30, 30], "score": 0.8},
    ]
    counts = np.array([2, 1])
    precision, _ = CocoPool(_cocoeval(gt, results)).accumulate(counts)
    ref = _finish(_cocoeval(*_duplicated(gt, results, counts)))
    assert np.array_equal(precision, ref.eval["precision"])


def _harness_inputs(order: list[int]) -> tuple[DetectionPredictions, SimpleNamespace, dict]:
    gt, results = _dataset()
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    preds = DetectionPredictions(
        {
            i: Detections(
                np.array(
                    [[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rs)], np.float32
                ),
                np.array([r["score"] for r in rs], np.float32),
                np.array([r["category_id"] for r in rs], np.int64),
            )
            for i, rs in by_image.items()
        }
    )
    ids = [gt["images"][k]["id"] for k in order]
    targets = SimpleNamespace(image_ids=ids, coco_gt=lambda: gt)
    return preds, targets, gt


def test_resamplers_agree_with_the_metrics_in_data_order() -> None:
    order = list(reversed(range(N_IMAGES)))  # data order differs from id order
    preds, targets, gt = _harness_inputs(order)
    ref = coco_evaluate(gt, preds, image_ids=targets.image_ids)
    identity = np.ones((1, N_IMAGES), np.int64)
    assert summary_resampler()(preds, targets)(identity)[0] == ref.stats[0]
    per_class = per_class_resampler()(preds, targets)(identity)
    expected = ref.ap_per_class()
    assert per_class.keys() == expected.keys()
    for name, values in per_class.items():
        assert np.array_equal(values, [expected[name]], equal_nan=True)
    # dropping image k in data order drops the image with id targets.image_ids[k]
    counts = np.ones((1, N_IMAGES), np.int64)
    counts[0, 0] = 0
    kept = targets.image_ids[1:]
    dropped = coco_evaluate(gt, preds.subset(kept), image_ids=kept).stats[0]
    assert summary_resampler()(preds, targets)(counts)[0] == dropped

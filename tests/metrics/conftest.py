"""The reference: pycocotools run the standard way, on json files, and helpers."""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from robustness_harness.inference.predictions import DetectionPredictions, Detections
from robustness_harness.metrics.detection import CocoEvalResult

Box = tuple[float, float, float, float]


def fill_gt(gt: dict[str, Any]) -> dict[str, Any]:
    """The documented filling: area w*h, iscrowd 0, ids 1..N when no annotation has one."""
    gt = json.loads(json.dumps(gt))
    anns = gt.setdefault("annotations", [])
    number = not any("id" in a for a in anns)
    for n, ann in enumerate(anns, start=1):
        ann.setdefault("area", ann["bbox"][2] * ann["bbox"][3])
        ann.setdefault("iscrowd", 0)
        if number:
            ann["id"] = n
    return gt


def reference_eval(
    gt: dict[str, Any],
    results: list[dict[str, Any]],
    image_ids: Sequence[int] | None = None,
) -> COCOeval:
    """``COCO(gt.json)``, ``loadRes(res.json)`` (a hand-built empty result COCO for
    no results, which loadRes cannot take), ``COCOeval`` evaluate/accumulate/summarize."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        gt_file, res_file = Path(tmp) / "gt.json", Path(tmp) / "res.json"
        gt_file.write_text(json.dumps(gt))
        res_file.write_text(json.dumps(results))
        coco_gt = COCO(str(gt_file))
        if results:
            coco_dt = coco_gt.loadRes(str(res_file))
        else:
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": coco_gt.dataset["images"],
                "categories": coco_gt.dataset["categories"],
                "annotations": [],
            }
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def reference_per_class(ev: COCOeval, iou_index: int | slice) -> list[float]:
    """detectron2's per-class AP from the reference precision array."""
    precision = ev.eval["precision"]
    out = []
    for k in range(precision.shape[2]):
        p = precision[iou_index, :, k, 0, -1]
        p = p[p > -1]
        out.append(float(np.mean(p)) if p.size else math.nan)
    return out


def assert_same(ours: CocoEvalResult, ref: COCOeval) -> None:
    """Bit-exact stats, precision and per-class AP (NaN == NaN)."""
    ref_stats = np.asarray(ref.stats)
    assert ours.stats.dtype == np.float64 and ours.stats.shape == (12,)
    assert np.array_equal(ours.stats, ref_stats), (ours.stats, ref_stats)
    assert ours.precision.shape == ref.eval["precision"].shape
    assert np.array_equal(ours.precision, ref.eval["precision"])
    assert ours.category_ids == [int(c) for c in ref.params.catIds]
    for mine, theirs in (
        (ours.ap_per_class(), reference_per_class(ref, slice(None))),
        (ours.ap50_per_class(), reference_per_class(ref, 0)),
    ):
        assert np.array_equal(list(mine.values()), theirs, equal_nan=True)


def make_gt(
    boxes: dict[int, list[tuple[Box, int]]],
    categories: Sequence[int] = (1, 2),
    crowd: dict[int, list[tuple[Box, int]]] | None = None,
) -> dict[str, Any]:
    """A complete COCO gt dict from ``{image_id: [(xywh, category_id), ...]}``."""
    anns: list[dict[str, Any]] = []
    for is_crowd, table in ((0, boxes), (1, crowd or {})):
        for image_id, items in table.items():
            for bbox, cat in items:
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": image_id,
                        "category_id": cat,
                        "bbox": list(bbox),
                        "area": bbox[2] * bbox[3],
                        "iscrowd": is_crowd,
                    }
                )
    return {
        "images": [{"id": i, "width": 640, "height": 480} for i in sorted(boxes)],
        "annotations": anns,
        "categories": [{"id": c, "name": f"class{c}"} for c in categories],
    }


def make_preds(table: dict[int, list[tuple[Box, float, int]]]) -> DetectionPredictions:
    """Predictions from ``{image_id: [(xyxy, score, category_id), ...]}`` (float32)."""
    by_image = {}
    for image_id, items in table.items():
        if not items:
            by_image[image_id] = Detections.empty()
            continue
        by_image[image_id] = Detections(
            np.array([b for b, _, _ in items], np.float32).reshape(-1, 4),
            np.array([s for _, s, _ in items], np.float32),
            np.array([c for _, _, c in items], np.int64),
        )
    return DetectionPredictions(by_image)


def xyxy(b: Box) -> Box:
    """xywh → xyxy."""
    return (b[0], b[1], b[0] + b[2], b[1] + b[3])


@pytest.fixture(scope="session")
def coco_ref() -> SimpleNamespace:
    """Reference evaluation and case builders (session-scoped: usable with hypothesis)."""
    return SimpleNamespace(
        evaluate=reference_eval,
        assert_same=assert_same,
        fill_gt=fill_gt,
        make_gt=make_gt,
        make_preds=make_preds,
        xyxy=xyxy,
    )

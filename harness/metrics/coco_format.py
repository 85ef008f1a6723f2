"""COCO's formats as pycocotools reads them: ground truth, detections, results.

``coco_evaluate`` (``detection``) and the resampled evaluation (``coco_resample``) share
this: ground truth round-tripped through canonical JSON and normalised (area, iscrowd,
annotation ids; see ``detection``'s module doc), its fingerprint, the checks on the
evaluated image ids and on predictions (shapes, finite values, known images and
categories), the result ``COCO`` of a possibly empty result list, and ``CocoEvalResult``,
what an evaluation computed.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from robustness_harness.errors import DataError
from robustness_harness.inference.predictions import DetectionPredictions
from robustness_harness.metrics.coco_backend import results_array

GT_FINGERPRINT_KEY = "_harness_fingerprint"
"""Optional key of a gt dict holding a precomputed fingerprint (trusted as is)."""


@dataclass(frozen=True)
class CocoEvalResult:
    """What ``COCOeval`` computed: ``stats`` (12,) and ``precision`` (T, R, K, A, M).

    Both arrays are read-only. Categories are in ``COCOeval`` order (sorted ids).
    """

    stats: np.ndarray
    precision: np.ndarray
    category_ids: list[int]
    category_names: list[str]

    def ap_per_class(self) -> dict[str, float]:
        """AP@[.5:.95] (area all, maxDets 100) per class name; NaN without ground truth."""
        return self._per_class(slice(None))

    def ap50_per_class(self) -> dict[str, float]:
        """AP@0.5 (area all, maxDets 100) per class name; NaN without ground truth."""
        return self._per_class(0)

    def _per_class(self, iou_index: int | slice) -> dict[str, float]:
        """Mean of ``precision[iou_index, :, k, 0, -1]`` over entries > -1 (detectron2)."""
        out: dict[str, float] = {}
        for k, key in enumerate(self._class_keys()):
            p = self.precision[iou_index, :, k, 0, -1]
            p = p[p > -1]
            out[key] = float(np.mean(p)) if p.size else math.nan
        return out

    def _class_keys(self) -> list[str]:
        """Category names; a name shared by several ids gets `` (id N)`` appended."""
        names = self.category_names
        return [
            f"{n} (id {i})" if names.count(n) > 1 else n
            for n, i in zip(names, self.category_ids, strict=True)
        ]


# ---------------------------------------------------------------------------- gt


def _json_default(obj: Any) -> Any:
    """Plain Python values for numpy scalars and arrays in a gt dict."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def canonical_gt_json(gt: dict[str, Any]) -> str:
    """Sorted-key compact JSON of ``gt``; lists keep their order."""
    try:
        return json.dumps(gt, sort_keys=True, separators=(",", ":"), default=_json_default)
    except TypeError as err:
        raise DataError(
            f"ground truth is not JSON-serialisable: {err}",
            hint="use plain numbers, strings, lists and dicts with string keys",
        ) from err


def gt_fingerprint(gt: dict[str, Any]) -> tuple[str, str | None]:
    """``(gt[GT_FINGERPRINT_KEY], None)`` if set, else (sha256, canonical JSON)."""
    if not isinstance(gt, dict):
        raise DataError(f"ground truth must be a COCO dict, not {type(gt).__name__}")
    pre = gt.get(GT_FINGERPRINT_KEY)
    if isinstance(pre, str) and pre:
        return pre, None
    text = canonical_gt_json(gt)
    return hashlib.sha256(text.encode()).hexdigest(), text


def normalize_gt(dataset: dict[str, Any]) -> dict[str, Any]:
    """Validate a (private copy of a) COCO dict and fill area, iscrowd and ids."""
    for name in ("images", "categories"):
        if not isinstance(dataset.get(name), list) or not dataset[name]:
            raise DataError("missing or empty list", field=name, hint="give a COCO gt dict")
    anns = dataset.setdefault("annotations", [])
    if not isinstance(anns, list):
        raise DataError("must be a list", field="annotations")
    _check_ids(dataset["images"], "images")
    _check_ids(dataset["categories"], "categories")
    for i, ann in enumerate(anns):
        _fill_annotation(ann, f"annotations[{i}]")
    _fill_annotation_ids(anns)
    return dataset


def _check_ids(items: list[Any], field: str) -> None:
    """Every item is a dict with a unique integer ``id``."""
    seen: set[int] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not _is_int(item.get("id")):
            raise DataError("needs an integer 'id'", field=f"{field}[{i}]")
        if item["id"] in seen:
            raise DataError(f"duplicate id {item['id']}", field=f"{field}[{i}].id")
        seen.add(item["id"])


def _fill_annotation(ann: Any, field: str) -> None:
    """Check image_id, category_id and bbox; set ``area`` (w*h) and ``iscrowd`` (0)."""
    if not isinstance(ann, dict):
        raise DataError("must be a dict", field=field)
    for name in ("image_id", "category_id"):
        if not _is_int(ann.get(name)):
            raise DataError(f"needs an integer '{name}'", field=field)
    bbox = ann.get("bbox")
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, int | float) and math.isfinite(v) for v in bbox)
    ):
        raise DataError("bbox must be 4 finite numbers [x, y, w, h]", field=f"{field}.bbox")
    ann.setdefault("area", bbox[2] * bbox[3])
    ann.setdefault("iscrowd", 0)


def _fill_annotation_ids(anns: list[dict[str, Any]]) -> None:
    """Keep valid ids (unique, ≥ 1), or number all annotations 1..N when none has one."""
    have = [a for a in anns if "id" in a]
    if not have:
        for n, ann in enumerate(anns, start=1):
            ann["id"] = n
        return
    hint = "give every annotation a unique integer id >= 1, or none (numbered 1..N)"
    if len(have) != len(anns):
        raise DataError("some annotations have an 'id', others not", field="annotations", hint=hint)
    ids = [a["id"] for a in anns]
    if not all(_is_int(i) and i >= 1 for i in ids) or len(set(ids)) != len(ids):
        raise DataError(
            "annotation ids must be unique integers >= 1 (pycocotools treats id 0 as unmatched)",
            field="annotations[].id",
            hint=hint,
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


# ------------------------------------------------------------------- predictions


def check_image_ids(img_key: tuple[int, ...] | None, dataset: dict[str, Any]) -> None:
    """The evaluated image ids are non-empty and all in the ground truth."""
    if img_key is None:
        return
    if not img_key:
        raise DataError("no images to evaluate", field="image_ids", hint="pass some image ids")
    known = {img["id"] for img in dataset["images"]}
    _raise_unknown(sorted(set(img_key) - known), "image_ids", "images of the ground truth")


def check_predictions(preds: DetectionPredictions, dataset: dict[str, Any]) -> np.ndarray:
    """Predictions are well-shaped, finite, and on known images and categories; returns
    them as the ``(N, 7)`` results array (``coco_backend.results_array``)."""
    known_imgs = {img["id"] for img in dataset["images"]}
    known_cats = {cat["id"] for cat in dataset["categories"]}
    _raise_unknown(
        sorted(int(i) for i in preds.by_image if int(i) not in known_imgs),
        "predictions.image_id",
        "images of the ground truth",
    )
    for image_id, det in preds.by_image.items():
        _check_shapes(det.boxes, det.scores, det.category_ids, image_id)
    rows = results_array(preds)
    finite = np.isfinite(rows[:, 1:6]).all(axis=1)
    if not finite.all():
        image_id = int(rows[np.argmin(finite), 0])
        raise DataError("non-finite box or score", field=f"predictions[{image_id}]")
    cats = {int(c) for c in np.unique(rows[:, 6])}
    _raise_unknown(
        sorted(cats - known_cats), "predictions.category_id", "categories of the ground truth"
    )
    return rows


def _check_shapes(boxes: Any, scores: Any, cats: Any, image_id: int) -> None:
    """Shapes (N, 4), (N,), (N,)."""
    boxes, scores, cats = np.asarray(boxes), np.asarray(scores), np.asarray(cats)
    n = len(scores)
    if boxes.shape != (n, 4) or scores.shape != (n,) or cats.shape != (n,):
        raise DataError(
            f"shapes boxes {boxes.shape}, scores {scores.shape}, category_ids {cats.shape} "
            "do not agree",
            field=f"predictions[{image_id}]",
            hint="boxes (N, 4) xyxy, scores (N,), category_ids (N,)",
        )


def _raise_unknown(ids: list[int], field: str, where: str) -> None:
    if ids:
        shown = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
        raise DataError(
            f"{len(ids)} id(s) not among the {where}: {shown}",
            field=field,
            hint="evaluate predictions against the dataset they were made on",
        )


def results_coco(coco_gt: COCO, results: list[dict[str, Any]]) -> COCO:
    """The result ``COCO`` that ``coco_gt.loadRes(results)`` builds for bbox results.

    Unlike ``loadRes`` it accepts an empty list. Sets ``segmentation`` (box polygon,
    unless given), ``area = w*h``, ``id`` (1..N) and ``iscrowd = 0`` on each result.
    """
    res = COCO()
    res.dataset["info"] = copy.deepcopy(coco_gt.dataset.get("info", {}))
    res.dataset["images"] = list(coco_gt.dataset["images"])
    res.dataset["categories"] = copy.deepcopy(coco_gt.dataset["categories"])
    for n, ann in enumerate(results, start=1):
        x, y, w, h = ann["bbox"]
        ann.setdefault("segmentation", [[x, y, x, y + h, x + w, y + h, x + w, y]])
        ann["area"] = w * h
        ann["id"] = n
        ann["iscrowd"] = 0
    res.dataset["annotations"] = results
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def bbox_eval(
    dataset: dict[str, Any], preds: DetectionPredictions, img_key: tuple[int, ...] | None
) -> COCOeval:
    """A ``COCOeval(gt, dt, "bbox")`` of ``preds`` on the normalised ground truth
    ``dataset`` (checked first), on the images ``img_key`` (None: all), built quietly and
    not yet evaluated (callers set their parameters)."""
    check_image_ids(img_key, dataset)
    check_predictions(preds, dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        results = preds.to_coco_results()
        coco_dt = coco_gt.loadRes(results) if results else results_coco(coco_gt, results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
    if img_key is not None:
        ev.params.imgIds = list(img_key)
    return ev

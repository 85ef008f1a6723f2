"""Registered detection metrics, input errors and memoization of coco_evaluate."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import PIL.Image
import pytest

import robustness_harness.metrics
from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.errors import HarnessError
from robustness_harness.inference.predictions import DetectionPredictions, Detections
from robustness_harness.metrics import METRICS, coco_evaluate
from robustness_harness.metrics.coco_memo import CocoMemo, coco_memo
from robustness_harness.metrics.detection import GT_FINGERPRINT_KEY, evaluate_targets

A, B, C = (10.0, 20.0, 12.0, 10.0), (100.0, 100.0, 50.0, 40.0), (300.0, 200.0, 150.0, 120.0)
STATS = {"map": 0, "ap50": 1, "ap75": 2, "ap_small": 3, "ap_medium": 4, "ap_large": 5, "ar100": 8}


class Targets:
    """A duck-typed dataset: ``coco_gt()`` and ``image_ids``."""

    def __init__(self, gt: dict[str, Any], image_ids: list[int]) -> None:
        self._gt = gt
        self.image_ids = image_ids

    def coco_gt(self) -> dict[str, Any]:
        return self._gt


@pytest.fixture
def case(coco_ref: SimpleNamespace) -> tuple[dict[str, Any], DetectionPredictions]:
    gt = coco_ref.make_gt({1: [(A, 1), (B, 2)], 2: [(C, 1)], 3: []}, categories=(1, 2, 3))
    preds = coco_ref.make_preds(
        {
            1: [(coco_ref.xyxy(A), 0.9, 1), ((95, 98, 150, 140), 0.7, 2), ((0, 0, 9, 9), 0.8, 1)],
            2: [(coco_ref.xyxy(C), 0.6, 1), (coco_ref.xyxy(C), 0.6, 2)],
            3: [((5, 5, 50, 50), 0.95, 3)],
        }
    )
    return gt, preds


def test_builtin_metrics_are_registered_on_import() -> None:
    for name in [*STATS, "per_class_ap", "per_class_ap50"]:
        info = METRICS.get(name)
        assert info.task == "detection" and info.higher_is_better
        assert info.per_class == name.startswith("per_class")
        assert info.description and "\n" not in info.description
    assert (
        robustness_harness.metrics.CocoEvalResult is not None
        and robustness_harness.metrics.metric is not None
    )


def test_registered_metrics_match_reference(
    coco_ref: SimpleNamespace, case: tuple[dict[str, Any], DetectionPredictions]
) -> None:
    gt, preds = case
    targets = Targets(gt, [1, 2, 3])
    ref = coco_ref.evaluate(gt, preds.to_coco_results(), [1, 2, 3])
    for name, index in STATS.items():
        value = METRICS.get(name)(preds, targets).value
        expected = ref.stats[index]
        assert isinstance(value, float)
        assert value == expected or (expected == -1 and math.isnan(value)), name
    precision = ref.eval["precision"]
    for name, iou_index in (("per_class_ap", slice(None)), ("per_class_ap50", 0)):
        per_class = METRICS.get(name)(preds, targets).value
        assert list(per_class) == ["class1", "class2", "class3"]
        for k, value in enumerate(per_class.values()):
            p = precision[iou_index, :, k, 0, -1]
            p = p[p > -1]
            assert (value == np.mean(p)) if p.size else math.isnan(value)


def test_metric_of_a_split_uses_its_image_ids(
    coco_ref: SimpleNamespace, case: tuple[dict[str, Any], DetectionPredictions]
) -> None:
    gt, preds = case
    ref = coco_ref.evaluate(gt, preds.to_coco_results(), [2])
    assert METRICS.get("map")(preds, Targets(gt, [2])).value == ref.stats[0]


def test_missing_range_is_nan_not_minus_one(
    case: tuple[dict[str, Any], DetectionPredictions],
) -> None:
    gt, preds = case
    targets = Targets(gt, [2])  # image 2 holds a large box only
    assert math.isnan(METRICS.get("ap_small")(preds, targets).value)
    assert coco_evaluate(gt, preds, image_ids=[2]).stats[3] == -1


def test_memo_returns_the_same_result_and_sees_mutation(
    coco_ref: SimpleNamespace, case: tuple[dict[str, Any], DetectionPredictions]
) -> None:
    gt, preds = case
    memo = CocoMemo()
    first = coco_evaluate(gt, preds, memo=memo)
    assert coco_evaluate(copy.deepcopy(gt), preds, memo=memo) is first
    assert coco_evaluate(gt, preds, image_ids=[1, 2, 3], memo=memo) is not first
    assert coco_evaluate(gt, preds) is not first  # no memo: computed afresh
    assert not first.stats.flags.writeable and not first.precision.flags.writeable
    gt["annotations"][0]["bbox"][0] += 3.0
    moved = coco_evaluate(gt, preds, memo=memo)
    assert moved is not first and moved.stats[0] != first.stats[0]
    coco_ref.assert_same(moved, coco_ref.evaluate(gt, preds.to_coco_results()))


def test_precomputed_fingerprint_is_trusted(
    case: tuple[dict[str, Any], DetectionPredictions],
) -> None:
    gt, preds = case
    memo = CocoMemo()
    first = coco_evaluate({**gt, GT_FINGERPRINT_KEY: "v1"}, preds, memo=memo)
    again = coco_evaluate({**gt, GT_FINGERPRINT_KEY: "v1", "annotations": []}, preds, memo=memo)
    assert again is first
    assert coco_evaluate({**gt, GT_FINGERPRINT_KEY: "v2"}, preds, memo=memo) is not first


def test_the_memo_lives_in_the_data_and_its_views(
    tmp_path: Path, case: tuple[dict[str, Any], DetectionPredictions]
) -> None:
    gt, preds = case
    images = [{"file_name": f"{img['id']}.png", **img} for img in gt["images"]]
    for img in images:
        size = (int(img.get("width", 64)), int(img.get("height", 64)))
        PIL.Image.new("RGB", size).save(tmp_path / img["file_name"])
    (tmp_path / "gt.json").write_text(json.dumps({**gt, "images": images}))
    data = CocoDetectionData.load(tmp_path, tmp_path / "gt.json")
    first = evaluate_targets(preds, data)
    assert evaluate_targets(preds, data.subset(data.image_ids)) is first
    view = data.subset(data.image_ids[:2])
    assert coco_memo(data) is coco_memo(view) is data.derived["coco"]
    assert coco_memo({"images": []}) is None  # plain gt dicts carry no memo


def _preds(image_id: int, box: list[float], score: float, cat: int) -> DetectionPredictions:
    return DetectionPredictions(
        {
            image_id: Detections(
                np.array([box], np.float32), np.array([score], np.float32), np.array([cat])
            )
        }
    )


@pytest.mark.parametrize(
    ("preds", "image_ids", "words"),
    [
        (_preds(99, [0, 0, 5, 5], 0.5, 1), None, ["predictions.image_id", "99"]),
        (_preds(1, [0, 0, 5, 5], 0.5, 7), None, ["predictions.category_id", "7"]),
        (_preds(1, [0, 0, 5, 5], 0.5, 1), [1, 42], ["image_ids", "42"]),
        (_preds(1, [0, 0, 5, 5], 0.5, 1), [], ["image_ids", "no images"]),
        (_preds(1, [0, 0, 5, 5], float("nan"), 1), None, ["non-finite"]),
        (_preds(1, [0, 0, float("inf"), 5], 0.5, 1), None, ["non-finite"]),
        (
            DetectionPredictions(
                {1: Detections(np.zeros((2, 4)), np.zeros(3), np.zeros(2, np.int64))}
            ),
            None,
            ["shapes"],
        ),
    ],
)
def test_bad_predictions_raise(
    case: tuple[dict[str, Any], DetectionPredictions],
    preds: DetectionPredictions,
    image_ids: list[int] | None,
    words: list[str],
) -> None:
    gt, _ = case
    with pytest.raises(HarnessError) as err:
        coco_evaluate(gt, preds, image_ids=image_ids)
    for word in words:
        assert word in str(err.value)


def _ann_ids(*ids: int | None) -> list[dict[str, Any]]:
    anns = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]} for _ in ids]
    for ann, i in zip(anns, ids, strict=True):
        if i is not None:
            ann["id"] = i
    return anns


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"categories": []}, ["categories"]),
        ({"images": None}, ["images"]),
        ({"annotations": _ann_ids(0, 1)}, ["unique integers >= 1"]),
        ({"annotations": _ann_ids(3, 3)}, ["unique integers >= 1"]),
        ({"annotations": _ann_ids(1, None)}, ["some annotations have an 'id'"]),
        ({"annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5]}]}, ["bbox"]),
        ({"annotations": [{"image_id": 1, "bbox": [0, 0, 5, 5]}]}, ["category_id"]),
        ({"categories": [{"id": 1}, {"id": 1}]}, ["duplicate id 1"]),
        ({"info": {1, 2}}, ["JSON"]),
    ],
)
def test_bad_ground_truth_raises(
    case: tuple[dict[str, Any], DetectionPredictions], change: dict[str, Any], words: list[str]
) -> None:
    gt, _ = case
    with pytest.raises(HarnessError) as err:
        coco_evaluate({**gt, **change}, DetectionPredictions({}))
    for word in words:
        assert word in str(err.value)


def test_duplicate_category_names_stay_distinct(
    case: tuple[dict[str, Any], DetectionPredictions],
) -> None:
    gt, preds = case
    gt = {**gt, "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "car"}, {"id": 3}]}
    assert list(coco_evaluate(gt, preds).ap_per_class()) == ["car (id 1)", "car (id 2)", "3"]

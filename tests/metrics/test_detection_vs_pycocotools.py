"""coco_evaluate is bit-exact with pycocotools' COCOeval run directly on json files."""

from __future__ import annotations

import contextlib
import copy
import io
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO

from robustness_harness.inference.predictions import DetectionPredictions, Detections
from robustness_harness.metrics.detection import CocoEvalResult, coco_evaluate, results_coco

ONE = pytest.approx(1.0, abs=1e-15)  # precision is tp / (tp + fp + eps) in COCOeval
SMALL, MEDIUM, LARGE = (10.0, 20.0, 12.0, 10.0), (100.0, 100.0, 50.0, 40.0), (300, 200, 150, 120)


def check(
    coco_ref: SimpleNamespace,
    gt: dict[str, Any],
    preds: DetectionPredictions,
    image_ids: list[int] | None = None,
) -> CocoEvalResult:
    """Ours and the reference agree bit for bit; returns ours."""
    ours = coco_evaluate(gt, preds, image_ids=image_ids)
    ref = coco_ref.evaluate(coco_ref.fill_gt(gt), preds.to_coco_results(), image_ids)
    coco_ref.assert_same(ours, ref)
    return ours


def perfect(gt: dict[str, Any], score: float = 0.9) -> DetectionPredictions:
    """One exact detection per non-crowd gt box."""
    table: dict[int, list] = {img["id"]: [] for img in gt["images"]}
    for ann in gt["annotations"]:
        if not ann.get("iscrowd"):
            x, y, w, h = ann["bbox"]
            table[ann["image_id"]].append(((x, y, x + w, y + h), score, ann["category_id"]))
    return DetectionPredictions(
        {
            i: Detections(
                np.array([b for b, _, _ in d], np.float32).reshape(-1, 4),
                np.array([s for _, s, _ in d], np.float32),
                np.array([c for _, _, c in d], np.int64),
            )
            for i, d in table.items()
        }
    )


def test_perfect_detections_give_ap_one(coco_ref: SimpleNamespace) -> None:
    gt = coco_ref.make_gt({1: [(SMALL, 1), (MEDIUM, 2)], 2: [(LARGE, 1)], 3: [(MEDIUM, 1)]})
    res = check(coco_ref, gt, perfect(gt))
    assert res.stats[:6].tolist() == pytest.approx([1.0] * 6, abs=1e-15)
    assert res.stats[8] == 1.0
    assert res.ap_per_class() == pytest.approx({"class1": 1.0, "class2": 1.0}, abs=1e-15)
    assert res.category_names == ["class1", "class2"]


def test_detection_on_crowd_region_is_ignored_not_false_positive(
    coco_ref: SimpleNamespace,
) -> None:
    crowd_box = (300.0, 100.0, 200.0, 200.0)
    inside = (320.0, 120.0, 380.0, 180.0)
    gt = coco_ref.make_gt({1: [(MEDIUM, 1)]}, categories=(1,), crowd={1: [(crowd_box, 1)]})
    preds = coco_ref.make_preds({1: [(coco_ref.xyxy(MEDIUM), 0.5, 1), (inside, 0.9, 1)]})
    assert check(coco_ref, gt, preds).stats[0] == ONE
    no_crowd = coco_ref.make_gt({1: [(MEDIUM, 1)]}, categories=(1,))
    assert check(coco_ref, no_crowd, preds).stats[0] < 1.0


def test_images_without_detections(coco_ref: SimpleNamespace) -> None:
    gt = coco_ref.make_gt({1: [(MEDIUM, 1)], 2: [(LARGE, 1)]})
    absent = coco_ref.make_preds({1: [(coco_ref.xyxy(MEDIUM), 0.9, 1)]})
    empty = coco_ref.make_preds({1: [(coco_ref.xyxy(MEDIUM), 0.9, 1)], 2: []})
    a, b = check(coco_ref, gt, absent), check(coco_ref, gt, empty)
    assert np.array_equal(a.stats, b.stats)
    assert a.stats[8] == 0.5


def test_detections_on_images_without_ground_truth_are_false_positives(
    coco_ref: SimpleNamespace,
) -> None:
    gt = coco_ref.make_gt({1: [(MEDIUM, 1)], 2: []})
    preds = coco_ref.make_preds(
        {1: [(coco_ref.xyxy(MEDIUM), 0.5, 1)], 2: [(coco_ref.xyxy(LARGE), 0.9, 1)]}
    )
    assert 0.0 < check(coco_ref, gt, preds).stats[0] < 1.0


def test_class_without_ground_truth_is_nan(coco_ref: SimpleNamespace) -> None:
    gt = coco_ref.make_gt({1: [(MEDIUM, 1), (LARGE, 2)]}, categories=(1, 2, 3))
    preds = coco_ref.make_preds(
        {1: [(coco_ref.xyxy(MEDIUM), 0.9, 1), (coco_ref.xyxy(LARGE), 0.8, 3)]}
    )
    res = check(coco_ref, gt, preds)
    ap = res.ap_per_class()
    assert ap["class1"] == ONE and ap["class2"] == 0.0 and math.isnan(ap["class3"])
    assert math.isnan(res.ap50_per_class()["class3"])
    assert res.stats[0] == pytest.approx(0.5, abs=1e-15)


def test_duplicate_detection_is_one_tp_one_fp(coco_ref: SimpleNamespace) -> None:
    gt = coco_ref.make_gt({1: [(MEDIUM, 1), (LARGE, 1)]}, categories=(1,))
    m, lg = coco_ref.xyxy(MEDIUM), coco_ref.xyxy(LARGE)
    preds = coco_ref.make_preds({1: [(m, 0.9, 1), (m, 0.8, 1), (lg, 0.7, 1)]})
    res = check(coco_ref, gt, preds)
    # PR: TP (p 1, r .5), FP, TP (p 2/3, r 1) → interpolated over 101 recall points
    assert res.stats[1] == pytest.approx((51 * 1.0 + 50 * (2 / 3)) / 101)


def test_small_medium_large(coco_ref: SimpleNamespace) -> None:
    gt = coco_ref.make_gt({1: [(SMALL, 1), (MEDIUM, 1), (LARGE, 1)]}, categories=(1,))
    tiny = (0.0, 0.0, 2.0, 2.0)
    huge = (0.0, 0.0, 630.0, 470.0)
    preds = coco_ref.make_preds(
        {
            1: [
                (coco_ref.xyxy(SMALL), 0.9, 1),
                (coco_ref.xyxy(LARGE), 0.8, 1),
                (tiny, 0.95, 1),
                (huge, 0.97, 1),
            ]
        }
    )
    res = check(coco_ref, gt, preds)
    assert res.stats[4] == 0.0  # medium missed
    assert 0.0 < res.stats[3] <= 1.0 and 0.0 < res.stats[5] <= 1.0
    only_small = coco_ref.make_gt({1: [(SMALL, 1)]}, categories=(1,))
    res = check(coco_ref, only_small, preds)
    assert res.stats[4] == -1.0 and res.stats[5] == -1.0


@pytest.mark.parametrize("true_rank", [99, 100, 101, 130])
def test_more_than_100_detections_are_truncated(coco_ref: SimpleNamespace, true_rank: int) -> None:
    gt = coco_ref.make_gt({1: [(MEDIUM, 1)]}, categories=(1,))
    rng = np.random.default_rng(true_rank)
    items = []
    for r in range(150):
        score = 1.0 - r / 200
        if r == true_rank:
            items.append((coco_ref.xyxy(MEDIUM), score, 1))
        else:
            x, y = rng.uniform(300, 500, 2)
            items.append(((x, y, x + 20, y + 30), score, 1))
    res = check(coco_ref, gt, coco_ref.make_preds({1: items}))
    assert (res.stats[8] > 0) == (true_rank < 100)


def test_empty_predictions(coco_ref: SimpleNamespace) -> None:
    gt = coco_ref.make_gt({1: [(SMALL, 1), (LARGE, 2)], 2: [(SMALL, 1)]})
    for preds in (DetectionPredictions({}), coco_ref.make_preds({1: [], 2: []})):
        res = check(coco_ref, gt, preds)
        # no medium gt: -1 there; 0 elsewhere
        expected = [0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0]
        assert res.stats.tolist() == expected
        assert res.ap_per_class() == {"class1": 0.0, "class2": 0.0}


def test_results_coco_matches_load_res(coco_ref: SimpleNamespace) -> None:
    gt = coco_ref.make_gt({1: [(MEDIUM, 1)], 2: [(LARGE, 2)]})
    preds = coco_ref.make_preds(
        {1: [(coco_ref.xyxy(MEDIUM), 0.9, 1), ((1, 2, 30.5, 40.25), 0.3, 2)], 2: []}
    )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        ours = results_coco(coco_gt, preds.to_coco_results())
        theirs = coco_gt.loadRes(preds.to_coco_results())
    assert ours.dataset == theirs.dataset
    assert ours.anns == theirs.anns
    empty = results_coco(coco_gt, [])
    assert empty.dataset["annotations"] == [] and empty.dataset["images"] == gt["images"]


def test_image_id_subset(coco_ref: SimpleNamespace) -> None:
    gt = coco_ref.make_gt({1: [(MEDIUM, 1)], 2: [(LARGE, 1)], 3: [(SMALL, 2)]})
    preds = coco_ref.make_preds(
        {1: [(coco_ref.xyxy(MEDIUM), 0.9, 1)], 3: [(coco_ref.xyxy(LARGE), 0.9, 2)]}
    )
    full = check(coco_ref, gt, preds)
    part = check(coco_ref, gt, preds, image_ids=[1])
    assert part.stats[0] == ONE and full.stats[0] < 1.0
    assert math.isnan(part.ap_per_class()["class2"])


def test_gt_without_area_iscrowd_id_is_filled_and_not_mutated(
    coco_ref: SimpleNamespace,
) -> None:
    gt = coco_ref.make_gt({1: [(MEDIUM, 1), (SMALL, 2)], 2: [(LARGE, 1)]})
    for ann in gt["annotations"]:
        del ann["area"], ann["iscrowd"], ann["id"]
    before = copy.deepcopy(gt)
    preds = coco_ref.make_preds(
        {1: [(coco_ref.xyxy(MEDIUM), 0.9, 1)], 2: [(coco_ref.xyxy(LARGE), 0.6, 1)]}
    )
    check(coco_ref, gt, preds)
    assert gt == before


# ------------------------------------------------------------------ hypothesis

coord = st.integers(0, 50_000).map(lambda v: v / 100)
size = st.one_of(st.integers(100, 3_000), st.integers(3_000, 25_000)).map(lambda v: v / 100)
score = st.one_of(st.sampled_from([0.1, 0.5, 0.5, 0.9, 1.0]), st.floats(0.0, 1.0))


@st.composite
def gt_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """1–6 images, 1–4 categories, 0–6 boxes each (some crowd); fields maybe omitted."""
    img_ids = draw(st.lists(st.integers(1, 10_000), min_size=1, max_size=6, unique=True))
    cat_ids = draw(st.lists(st.integers(1, 90), min_size=1, max_size=4, unique=True))
    explicit = draw(st.booleans())
    anns = []
    for image_id in img_ids:
        for _ in range(draw(st.integers(0, 6))):
            bbox = [draw(coord), draw(coord), draw(size), draw(size)]
            ann = {"image_id": image_id, "category_id": draw(st.sampled_from(cat_ids))}
            ann["bbox"] = bbox
            crowd = draw(st.integers(0, 7)) == 0
            if crowd or explicit:
                ann["iscrowd"] = int(crowd)
            if explicit:  # real COCO areas differ from the box area
                ann["area"] = round(bbox[2] * bbox[3] * draw(st.floats(0.3, 1.0)), 2)
            anns.append(ann)
    if explicit:
        ids = draw(st.permutations(range(1, len(anns) + 1)))
        for ann, i in zip(anns, ids, strict=True):
            ann["id"] = 7 * i
    return {
        "images": [{"id": i, "width": 640, "height": 480} for i in img_ids],
        "annotations": anns,
        "categories": [{"id": c, "name": f"c{c}"} for c in cat_ids],
    }


def jittered(draw: st.DrawFn, bbox: list[float]) -> list[float]:
    """An xyxy box near the xywh ``bbox``: shifted and resized by up to 30 %."""
    x, y, w, h = bbox
    j = draw(st.lists(st.floats(-0.3, 0.3), min_size=4, max_size=4))
    x0, y0 = x + j[0] * w, y + j[1] * h
    return [x0, y0, x0 + max(w * (1 + j[2]), 0.5), y0 + max(h * (1 + j[3]), 0.5)]


@st.composite
def gt_and_preds(draw: st.DrawFn) -> tuple[dict[str, Any], DetectionPredictions, Any]:
    """Jittered copies of gt boxes (category sometimes wrong) plus random boxes."""
    gt = draw(gt_dicts())
    cat_ids = [c["id"] for c in gt["categories"]]
    by_image = {}
    for img in gt["images"]:
        if draw(st.integers(0, 4)) == 0:
            continue  # an image without predictions
        rows = []
        for ann in (a for a in gt["annotations"] if a["image_id"] == img["id"]):
            tied = draw(score)  # several copies of one object sharing a score: tie order
            for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
                rows.append((jittered(draw, ann["bbox"]), tied, ann["category_id"]))
            if draw(st.integers(0, 5)) == 0:  # a copy with a wrong category
                rows.append(
                    (jittered(draw, ann["bbox"]), draw(score), draw(st.sampled_from(cat_ids)))
                )
        for _ in range(draw(st.integers(0, 4))):
            x0, y0 = draw(coord), draw(coord)
            box = [x0, y0, x0 + draw(size), y0 + draw(size)]
            rows.append((box, draw(score), draw(st.sampled_from(cat_ids))))
        rows = draw(st.permutations(rows))
        by_image[img["id"]] = Detections(
            np.array([r[0] for r in rows], np.float32).reshape(-1, 4),
            np.array([r[1] for r in rows], np.float32),
            np.array([r[2] for r in rows], np.int64),
        )
    all_ids = [img["id"] for img in gt["images"]]
    image_ids = draw(
        st.one_of(st.none(), st.lists(st.sampled_from(all_ids), min_size=1, unique=True))
    )
    return gt, DetectionPredictions(by_image), image_ids


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(case=gt_and_preds())
def test_random_cases_bit_exact(
    coco_ref: SimpleNamespace, case: tuple[dict[str, Any], DetectionPredictions, Any]
) -> None:
    gt, preds, image_ids = case
    check(coco_ref, gt, preds, image_ids)

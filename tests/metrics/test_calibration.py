"""ECE against torchmetrics, equal-mass bins and D-ECE against hand computations."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.classification import MulticlassCalibrationError

from robustness_harness.errors import SpecError
from robustness_harness.inference.predictions import ClassPredictions
from robustness_harness.metrics import METRICS
from robustness_harness.metrics.calibration import ece, expected_calibration_error
from robustness_harness.metrics.detection import coco_match
from tests.metrics.hand_cases import CROWD, A, B, C, Targets

DYADIC = (1, 2, 4, 8, 16, 32)  # bin edges k/B exact in float32 and float64


class Labels:
    """A duck-typed classification set: image ids, labels, number of classes."""

    def __init__(self, image_ids: list[int], labels: np.ndarray, num_classes: int) -> None:
        self.image_ids = image_ids
        self.num_classes = num_classes
        self._labels = dict(zip(image_ids, labels.tolist(), strict=True))

    def labels(self, image_ids: Any = None) -> np.ndarray:
        ids = self.image_ids if image_ids is None else image_ids
        return np.array([self._labels[i] for i in ids], np.int64)


def torchmetrics_ece(probs: np.ndarray, target: np.ndarray, bins: int) -> float:
    metric = MulticlassCalibrationError(num_classes=probs.shape[1], n_bins=bins, norm="l1")
    return float(metric(torch.from_numpy(probs), torch.from_numpy(target)))


def rows_with_top1(conf: np.ndarray, top1: np.ndarray, k: int, rng: np.random.Generator):
    """Probability-like rows in [0, 1] (float32) whose max ``conf[i]`` is at ``top1[i]``;
    torchmetrics does not require rows to sum to 1."""
    probs = (rng.random((conf.size, k)) * 0.5 * conf[:, None]).astype(np.float32)
    probs[np.arange(conf.size), top1] = conf
    return probs


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    k=st.integers(2, 6),
    bins=st.sampled_from([*DYADIC, 3, 5, 10, 15, 20]),
    on_edges=st.floats(0.0, 1.0),
)
def test_equal_width_matches_torchmetrics(
    seed: int, n: int, k: int, bins: int, on_edges: float
) -> None:
    rng = np.random.default_rng(seed)
    # confidences on a 2^-16 grid (never within float32 rounding of a k/B edge unless on it)
    conf = rng.integers(1, 2**16 + 1, n) / 2**16
    if bins in DYADIC:  # a fraction of them exactly on edges, 1.0 included
        edge = rng.random(n) < on_edges
        conf[edge] = rng.integers(1, bins + 1, int(edge.sum())) / bins
    conf = conf.astype(np.float32)
    top1 = rng.integers(0, k, n)
    target = np.where(rng.random(n) < conf, top1, (top1 + 1) % k)
    probs = rows_with_top1(conf, top1, k, rng)
    ours, table = expected_calibration_error(conf, top1 == target, bins=bins)
    assert ours == pytest.approx(torchmetrics_ece(probs, target, bins), abs=1e-6)
    assert sum(row["count"] for row in table) == n and len(table) == bins + 1


def test_edge_convention_left_closed_and_one_apart() -> None:
    # torchmetrics: bucketize(right=True) - 1 → an edge starts its bin; 1.0 is a bin alone
    conf = np.array([0.25, 0.5, 0.5, 0.75, 1.0, 1.0], np.float32)
    hit = np.array([1, 1, 0, 1, 1, 0], bool)
    value, table = expected_calibration_error(conf, hit, bins=4)
    assert [row["count"] for row in table] == [0, 1, 2, 1, 2]
    assert (table[-1]["lo"], table[-1]["hi"]) == (1.0, 1.0)
    expected = (1 * 0.75 + 2 * 0.0 + 1 * 0.25 + 2 * 0.5) / 6
    assert value == pytest.approx(expected, abs=1e-12)
    probs = rows_with_top1(conf, np.zeros(6, int), 3, np.random.default_rng(0))
    target = np.where(hit, 0, 1)
    assert value == pytest.approx(torchmetrics_ece(probs, target, 4), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_metric_on_logits_matches_torchmetrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 500, 5
    logits = (rng.normal(size=(n, k)) * 2.0).astype(np.float32)
    target = rng.integers(0, k, n)
    ids = [int(i) for i in rng.permutation(10_000)[:n]]
    preds = ClassPredictions(ids, logits)
    data = Labels(sorted(ids), target[np.argsort(ids)], k)  # another order than preds
    result = METRICS.get("ece")(preds, data, bins=15)
    reference = torchmetrics_ece(preds.probs.astype(np.float32), target, 15)
    assert result.value == pytest.approx(reference, abs=1e-6)
    assert result.details["n"] == n and len(result.details["bins"]) == 16


def test_equal_mass_hand_example() -> None:
    conf = [0.9, 0.2, 0.6, 0.8, 0.3, 0.7, 0.55]
    hit = [1, 0, 1, 1, 0, 0, 1]
    # sorted: .2✗ .3✗ .55✓ | .6✓ .7✗ | .8✓ .9✓  (array_split of 7 into 3: 3, 2, 2)
    # |1/3 − .35|·3 + |.5 − .65|·2 + |1 − .85|·2 = .05 + .3 + .3
    value, table = expected_calibration_error(conf, hit, bins=3, binning="equal_mass")
    assert value == pytest.approx(0.65 / 7, abs=1e-12)
    assert [row["count"] for row in table] == [3, 2, 2]
    assert [(row["lo"], row["hi"]) for row in table] == [(0.2, 0.55), (0.6, 0.7), (0.8, 0.9)]
    assert table[0]["acc"] == pytest.approx(1 / 3) and table[0]["conf"] == pytest.approx(0.35)


def test_equal_mass_ties_do_not_depend_on_order() -> None:
    # ties sorted incorrect first: [.5✗ .5✗ | .5✓ .5✓] → |0 − .5|·2 + |1 − .5|·2 = 2 → 0.5
    for hit in ([1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0]):
        value, _ = expected_calibration_error([0.5] * 4, hit, bins=2, binning="equal_mass")
        assert value == 0.5


def test_equal_mass_more_bins_than_values() -> None:
    value, table = expected_calibration_error([0.9, 0.4], [1, 1], bins=4, binning="equal_mass")
    assert [row["count"] for row in table] == [1, 1, 0, 0]
    assert table[-1] == {"lo": None, "hi": None, "count": 0, "acc": None, "conf": None}
    assert value == pytest.approx((0.1 + 0.6) / 2)


def test_one_bin_is_the_gap_of_the_means() -> None:
    value, _ = expected_calibration_error([0.9, 0.7, 0.2], [1, 0, 0], bins=1)
    assert value == pytest.approx(abs(1 / 3 - 0.6))


def test_empty_input_and_bad_arguments() -> None:
    value, table = expected_calibration_error([], [], bins=3)
    assert math.isnan(value) and [row["count"] for row in table] == [0, 0, 0, 0]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5], [1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([float("nan")], [1])
    with pytest.raises(ValueError, match="one length"):
        expected_calibration_error([0.5, 0.6], [1])
    with pytest.raises(SpecError, match="bins"):
        expected_calibration_error([0.5], [1], bins=0)
    with pytest.raises(SpecError, match="binning"):
        expected_calibration_error([0.5], [1], binning="quantile")  # type: ignore[arg-type]


def test_registered() -> None:
    info = METRICS.get("ece")
    assert info.task == "any" and not info.higher_is_better and info.inputs == "predictions"
    assert list(info.params) == ["bins", "binning", "score_threshold", "iou"]
    assert info.params["bins"].default == 15 and info.params["binning"].default == "equal_width"


# -- D-ECE ------------------------------------------------------------------------------


@pytest.fixture
def detection_case(coco_ref: SimpleNamespace) -> tuple[Any, Targets]:
    gt = coco_ref.make_gt({1: [(A, 1), (B, 2)], 2: [(C, 1)]}, crowd={2: [(CROWD, 1)]})
    xyxy = coco_ref.xyxy
    preds = coco_ref.make_preds(
        {
            1: [
                (xyxy(A), 0.9, 1),  # matches A: correct
                (xyxy((11.0, 10.0, 20.0, 20.0)), 0.8, 1),  # A already taken: wrong
                (xyxy(B), 0.6, 1),  # wrong category: wrong
                (xyxy(B), 0.2, 2),  # would be correct, but under the threshold
            ],
            2: [
                (xyxy((56.0, 50.0, 30.0, 30.0)), 0.7, 1),  # IoU 720/1080 = 2/3 with C
                (xyxy((210.0, 210.0, 20.0, 20.0)), 0.65, 1),  # inside the crowd: left out
                (xyxy((400.0, 400.0, 10.0, 10.0)), 0.4, 2),  # nothing there: wrong
            ],
        }
    )
    return preds, Targets(gt)


def test_detection_ece_hand_example(detection_case: tuple[Any, Targets]) -> None:
    preds, targets = detection_case
    # kept: .9✓ .8✗ .7✓ .6✗ .4✗; bins [0, .5): .4✗ → .4·1; [.5, 1): acc .5, conf .75 → .25·4
    result = ece(preds, targets, bins=2)
    assert result.value == pytest.approx((0.4 + 1.0) / 5, abs=1e-6)
    assert result.details["n"] == 5
    assert [row["count"] for row in result.details["bins"]] == [1, 4, 0]
    assert result.details["bins"][1]["acc"] == 0.5


def test_detection_ece_threshold_and_iou(detection_case: tuple[Any, Targets]) -> None:
    preds, targets = detection_case
    # τ = 0.1 adds .2✓: [0, .5): acc .5, conf .3 → .2·2; [.5, 1) unchanged → 1.0
    assert ece(preds, targets, bins=2, score_threshold=0.1).value == pytest.approx(
        1.4 / 6, abs=1e-6
    )
    # τ = 0.5 keeps .9✓ .8✗ .7✓ .6✗ only
    assert ece(preds, targets, bins=2, score_threshold=0.5).value == pytest.approx(0.25, abs=1e-6)
    # IoU 0.7: the 2/3-overlap detection no longer matches → [.5, 1): acc .25 → .5·4
    assert ece(preds, targets, bins=2, iou=0.7).value == pytest.approx(2.4 / 5, abs=1e-6)


def test_detection_ece_without_detections_is_nan(
    coco_ref: SimpleNamespace, detection_case: tuple[Any, Targets]
) -> None:
    _, targets = detection_case
    result = ece(coco_ref.make_preds({1: [((0, 0, 5, 5), 0.1, 1)]}), targets)
    assert math.isnan(result.value) and result.details["n"] == 0 and result.note


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), iou_index=st.sampled_from([0, 5, 9]))
def test_coco_match_agrees_with_reference_evalimgs(
    coco_ref: SimpleNamespace, seed: int, iou_index: int
) -> None:
    """The matching D-ECE and flip_rate use equals pycocotools' own (default parameters,
    json files), including crowd regions and the 100-detection cap."""
    rng = np.random.default_rng(seed)

    def box() -> tuple[float, float, float, float]:
        x, y = rng.uniform(0, 100, 2)
        w, h = rng.uniform(4, 40, 2)
        return (float(x), float(y), float(w), float(h))

    objects = {
        i: [(box(), int(rng.integers(1, 3))) for _ in range(rng.integers(0, 6))] for i in (1, 2, 3)
    }
    crowd = {i: [(box(), 1)] for i in (1, 2) if rng.random() < 0.5}
    gt = coco_ref.make_gt(objects, crowd=crowd)
    table: dict[int, list[Any]] = {}
    for image_id in (1, 2, 3):
        n = 120 if image_id == 1 else int(rng.integers(0, 15))  # image 1: over maxDets
        near = [b for b, _ in objects[image_id] + crowd.get(image_id, [])] or [box()]
        table[image_id] = [
            (
                coco_ref.xyxy(tuple(np.add(near[rng.integers(len(near))], rng.normal(0, 3, 4)))),
                float(np.float32(rng.random())),
                1 if image_id == 1 else int(rng.integers(1, 3)),
            )
            for _ in range(n)
        ]
    preds = coco_ref.make_preds(table)
    iou = float(np.linspace(0.5, 0.95, 10)[iou_index])
    ours = coco_match(gt, preds, iou=iou)
    ref = coco_ref.evaluate(gt, preds.to_coco_results())
    dt, found = [], {}
    for e in ref.evalImgs:
        if e is None or e["aRng"] != ref.params.areaRng[0]:
            continue
        for d, score in enumerate(e["dtScores"]):
            if not e["dtIgnore"][iou_index, d]:
                dt.append(
                    (e["image_id"], e["category_id"], score, e["dtMatches"][iou_index, d] > 0)
                )
        for g, gt_id in enumerate(e["gtIds"]):
            if not e["gtIgnore"][g]:
                found[gt_id] = e["gtMatches"][iou_index, g] > 0
    mine = zip(
        ours.dt_image_ids, ours.dt_category_ids, ours.dt_scores, ours.dt_matched, strict=True
    )
    assert sorted(map(tuple, mine)) == sorted(dt)
    assert ours.gt_ids.tolist() == sorted(found)
    assert (ours.gt_match_scores > -np.inf).tolist() == [found[i] for i in sorted(found)]

"""Stability metrics: flips, per-class accuracy drop, confidence shift, saliency change."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.errors import DataError
from robustness_harness.inference.predictions import ClassPredictions
from robustness_harness.metrics import METRICS
from robustness_harness.metrics.context import ModelContext
from robustness_harness.metrics.stability import (
    class_accuracy_delta,
    confidence_shift,
    flip_rate,
    saliency_change,
    saliency_maps,
)
from tests.metrics.hand_cases import CROWD, A, B, C, Targets
from tests.metrics.test_classification_metrics import make_classification_data, one_hot_logits

LABELS = [0, 0, 0, 1, 1, 2, 2]  # cat cat cat dog dog fox fox


@pytest.fixture
def data(tmp_path: Path) -> ClassificationData:
    return make_classification_data(tmp_path, LABELS)


def test_registered() -> None:
    expected = {
        "flip_rate": ("any", "pair"),
        "class_accuracy_delta": ("classification", "pair"),
        "confidence_shift": ("classification", "pair"),
        "saliency_change": ("classification", "model"),
    }
    for name, (task, inputs) in expected.items():
        info = METRICS.get(name)
        assert (info.task, info.inputs, info.higher_is_better) == (task, inputs, False)
    assert list(METRICS.get("flip_rate").params) == ["iou", "score_threshold"]
    assert METRICS.get("saliency_change").params == {}


# -- flip_rate ---------------------------------------------------------------------------


def test_flip_rate_classification(data: ClassificationData) -> None:
    ids = data.image_ids
    base = ClassPredictions(ids, one_hot_logits([0, 0, 0, 1, 1, 2, 2]))
    cand = ClassPredictions(ids[::-1], one_hot_logits([2, 1, 1, 1, 0, 2, 0][::-1]))
    # candidate (listed in reverse) 2 1 1 1 0 2 0 vs baseline 0 0 0 1 1 2 2: 5 differ
    result = flip_rate(cand, base, data)
    assert result.value == pytest.approx(5 / 7)
    assert result.details == {"n": 7, "flips": 5}
    assert flip_rate(base, base, data).value == 0.0


def test_flip_rate_detection(coco_ref: SimpleNamespace) -> None:
    gt = coco_ref.make_gt({1: [(A, 1), (B, 2)], 2: [(C, 1)]}, crowd={2: [(CROWD, 1)]})
    targets = Targets(gt)
    xyxy = coco_ref.xyxy
    cand = coco_ref.make_preds(
        {
            1: [(xyxy(A), 0.9, 1), (xyxy(B), 0.5, 2)],  # finds A and B
            2: [(xyxy(C), 0.8, 2), (xyxy(CROWD), 0.9, 1)],  # C: wrong category; crowd hit
        }
    )
    base = coco_ref.make_preds(
        {
            1: [(xyxy(A), 0.6, 1), (xyxy(B), 0.2, 2)],  # B under the threshold
            2: [(xyxy((56.0, 50.0, 30.0, 30.0)), 0.7, 1)],  # C at IoU 2/3
        }
    )
    # objects A, B, C (the crowd region does not count): cand {A, B}, base {A, C}
    result = flip_rate(cand, base, targets)
    assert result.value == pytest.approx(2 / 3)
    assert result.details == {"n": 3, "lost": 1, "gained": 1}
    # at IoU 0.7 the baseline misses C: only B differs
    assert flip_rate(cand, base, targets, iou=0.7).value == pytest.approx(1 / 3)
    # at τ 0.1 the baseline finds B too: only C differs
    assert flip_rate(cand, base, targets, score_threshold=0.1).value == pytest.approx(1 / 3)
    assert flip_rate(cand, cand, targets).value == 0.0


def test_flip_rate_detection_uses_greedy_matching(coco_ref: SimpleNamespace) -> None:
    # one detection overlapping two objects matches only the better one
    left, right = (0.0, 0.0, 20.0, 20.0), (10.0, 0.0, 20.0, 20.0)
    targets = Targets(coco_ref.make_gt({1: [(left, 1), (right, 1)]}))
    one = coco_ref.make_preds({1: [(coco_ref.xyxy((2.0, 0.0, 20.0, 20.0)), 0.9, 1)]})
    both = coco_ref.make_preds({1: [(coco_ref.xyxy(left), 0.9, 1), (coco_ref.xyxy(right), 0.8, 1)]})
    assert flip_rate(one, both, targets).details == {"n": 2, "lost": 1, "gained": 0}


def test_flip_rate_mixed_kinds_raise(coco_ref: SimpleNamespace, data: ClassificationData) -> None:
    cls = ClassPredictions(data.image_ids, one_hot_logits(LABELS))
    det = coco_ref.make_preds({1: []})
    with pytest.raises(DataError, match="different kinds"):
        flip_rate(cls, det, data)


# -- class_accuracy_delta and confidence_shift -------------------------------------------


def test_class_accuracy_delta_names_the_class(data: ClassificationData) -> None:
    base = ClassPredictions(data.image_ids, one_hot_logits(LABELS))  # all right
    cand = ClassPredictions(data.image_ids, one_hot_logits([0, 0, 1, 1, 0, 0, 1]))
    # cat 2/3, dog 1/2, fox 0/2 → drops 1/3, 1/2, 1
    result = class_accuracy_delta(cand, base, data)
    assert result.value == pytest.approx(1.0)
    assert result.details["class"] == "fox"
    assert (result.details["baseline"], result.details["candidate"]) == (1.0, 0.0)
    assert result.details["deltas"] == pytest.approx({"cat": 1 / 3, "dog": 0.5, "fox": 1.0})
    assert "'fox'" in result.note and "1.000 -> 0.000" in result.note
    assert class_accuracy_delta(base, cand, data).value == pytest.approx(-1 / 3)  # all better


def test_class_accuracy_delta_skips_classes_without_images(data: ClassificationData) -> None:
    cats = data.subset(data.image_ids[:3])
    base = ClassPredictions(data.image_ids, one_hot_logits(LABELS))
    cand = ClassPredictions(data.image_ids, one_hot_logits([0, 1, 1, 1, 1, 2, 2]))
    result = class_accuracy_delta(cand, base, cats)
    assert result.details["deltas"] == pytest.approx({"cat": 2 / 3})
    assert result.details["class"] == "cat"


def test_confidence_shift_hand_example(data: ClassificationData) -> None:
    two = data.subset(data.image_ids[:2])
    ln = math.log
    base = ClassPredictions(two.image_ids, np.array([[ln(3), 0, -50], [0, ln(4), -50]]))
    cand = ClassPredictions(two.image_ids, np.array([[0, 0, -50], [0, ln(9), -50]]))
    # baseline top-1: 0 (p .75), 1 (p .8); candidate p of those: .5, .9 → |.25|, |.1|
    result = confidence_shift(cand, base, two)
    assert result.value == pytest.approx(0.175, abs=1e-9)
    assert result.details["max"] == pytest.approx(0.25, abs=1e-9)
    assert confidence_shift(base, base, two).value == 0.0


# -- saliency_change ---------------------------------------------------------------------


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def context(model: nn.Module, baseline: nn.Module, data: Any, **kw: Any) -> ModelContext:
    return ModelContext(
        model=model.eval(),
        data=data,
        device=torch.device("cpu"),
        task="classification",
        baseline_model=lambda: baseline,
        **kw,
    )


def test_saliency_change_zero_for_identical_models(data: ClassificationData) -> None:
    model = tiny_cnn()
    result = saliency_change(context(model, copy.deepcopy(model), data))
    assert result.value == 0.0 and result.details["mean_abs"] == 0.0
    assert result.details["n"] == len(data) and result.note == ""


def test_saliency_change_positive_when_perturbed_and_deterministic(
    data: ClassificationData,
) -> None:
    model = tiny_cnn()
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        torch.manual_seed(1)
        for p in perturbed.parameters():
            p.add_(0.3 * torch.randn_like(p))
    first = saliency_change(context(perturbed, model, data))
    again = saliency_change(context(perturbed, model, data, batch_size=3))
    assert first.value > 0
    assert again.value == pytest.approx(first.value, rel=1e-6)
    assert saliency_change(context(perturbed, model, data)).value == first.value
    pixels = 8 * 8
    assert 0 < first.value <= 1 and 0 < first.details["mean_abs"] <= 2 / pixels
    assert first.value == pytest.approx(first.details["mean_abs"] * pixels / 2)


def test_saliency_maps_of_a_linear_model(data: ClassificationData) -> None:
    # ∂ logit_y / ∂ x = W[y], so the map is max_c |W[y, c]| normalised to sum 1
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    ctx = context(linear, linear, data)
    maps = saliency_maps(linear, ctx, data.image_ids)
    weight = linear[1].weight.detach().double().abs().reshape(3, 3, 8, 8).amax(dim=1).numpy()
    for label, got in zip(LABELS, maps, strict=True):
        want = weight[label] / weight[label].sum()
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert got.sum() == pytest.approx(1.0)


def test_saliency_change_of_two_linear_models(data: ClassificationData) -> None:
    torch.manual_seed(0)
    one = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    two = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))

    def maps(m: nn.Module) -> np.ndarray:
        w = m[1].weight.detach().double().abs().reshape(3, 3, 8, 8).amax(dim=1).numpy()
        return w / w.sum(axis=(1, 2), keepdims=True)

    per_label = 0.5 * np.abs(maps(one) - maps(two)).sum(axis=(1, 2))
    result = saliency_change(context(one, two, data.subset(data.image_ids[:5])))
    assert result.details["n"] == 5
    assert result.value == pytest.approx(per_label[LABELS[:5]].mean(), rel=1e-6)


def test_saliency_change_through_twin_and_errors(data: ClassificationData) -> None:
    model = tiny_cnn()
    ctx = context(nn.Identity(), model, data, twin=copy.deepcopy(model))
    result = saliency_change(ctx)
    assert result.value == 0.0 and "fake-quant twin" in result.note
    no_base = ModelContext(model=model, data=data, device=torch.device("cpu"), task="x")
    with pytest.raises(DataError, match="baseline"):
        saliency_change(no_base)

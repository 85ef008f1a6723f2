"""Top-1 accuracy and per-class accuracy on hand examples; alignment by image id."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.errors import DataError
from robustness_harness.inference.predictions import ClassPredictions
from robustness_harness.metrics import METRICS
from robustness_harness.metrics.classification import accuracy, per_class_accuracy

NAMES = ("cat", "dog", "fox")


def make_classification_data(
    root: Path,
    labels: Sequence[int],
    *,
    names: Sequence[str] = NAMES,
    image_ids: Sequence[int] | None = None,
    size: int = 8,
    seed: int = 0,
) -> ClassificationData:
    """A real ``ClassificationData``: random RGB PNGs and a COCO json in ``root``.

    Category ids are 10, 20, ... (class index k ↔ id 10 (k + 1)); ``labels`` are class
    indices, one image each, with ids ``image_ids`` (default 1..n).
    """
    rng = np.random.default_rng(seed)
    ids = list(image_ids) if image_ids is not None else list(range(1, len(labels) + 1))
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for n, (image_id, label) in enumerate(zip(ids, labels, strict=True), start=1):
        name = f"{image_id}.png"
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
        bbox = [0, 0, size, size]
        anns.append({"id": n, "image_id": image_id, "category_id": 10 * (label + 1), "bbox": bbox})
    cats = [{"id": 10 * (k + 1), "name": name} for k, name in enumerate(names)]
    doc = {"images": images, "annotations": anns, "categories": cats}
    (root / "ann.json").write_text(json.dumps(doc))
    return ClassificationData.load(root / "images", root / "ann.json")


def one_hot_logits(classes: Sequence[int], k: int = len(NAMES)) -> np.ndarray:
    """Logits (N, k) whose top-1 is ``classes[i]``."""
    logits = np.zeros((len(classes), k), np.float32)
    logits[np.arange(len(classes)), list(classes)] = 3.0
    return logits


@pytest.fixture
def data(tmp_path: Path) -> ClassificationData:
    # image ids 11..17; labels cat cat cat dog dog fox fox
    return make_classification_data(
        tmp_path, [0, 0, 0, 1, 1, 2, 2], image_ids=[11, 12, 13, 14, 15, 16, 17]
    )


def test_registered() -> None:
    for name in ("accuracy", "per_class_accuracy"):
        info = METRICS.get(name)
        assert info.task == "classification" and info.higher_is_better
        assert info.per_class == (name == "per_class_accuracy")
        assert info.inputs == "predictions" and info.params == {}


def test_accuracy_hand_example(data: ClassificationData) -> None:
    # predicted: cat dog cat | dog dog | cat fox → 5 of 7 right
    preds = ClassPredictions(data.image_ids, one_hot_logits([0, 1, 0, 1, 1, 0, 2]))
    assert accuracy(preds, data) == pytest.approx(5 / 7)
    assert per_class_accuracy(preds, data) == pytest.approx({"cat": 2 / 3, "dog": 1.0, "fox": 0.5})
    assert METRICS.get("accuracy")(preds, data).value == pytest.approx(5 / 7)


def test_predictions_are_aligned_by_image_id(data: ClassificationData) -> None:
    classes = [0, 1, 0, 1, 1, 0, 2]
    order = [5, 2, 6, 0, 3, 1, 4]
    shuffled = ClassPredictions(
        [data.image_ids[i] for i in order], one_hot_logits([classes[i] for i in order])
    )
    assert accuracy(shuffled, data) == pytest.approx(5 / 7)
    assert per_class_accuracy(shuffled, data) == pytest.approx(
        {"cat": 2 / 3, "dog": 1.0, "fox": 0.5}
    )


def test_extra_predictions_are_ignored_and_split_counts(data: ClassificationData) -> None:
    preds = ClassPredictions(
        [*data.image_ids, 99], one_hot_logits([0, 1, 0, 1, 1, 0, 2, 1])
    )  # 99 is not in the data
    dogs_and_foxes = data.subset([14, 15, 16, 17])
    assert accuracy(preds, dogs_and_foxes) == pytest.approx(3 / 4)
    per_class = per_class_accuracy(preds, dogs_and_foxes)
    assert list(per_class) == list(NAMES)
    assert math.isnan(per_class["cat"])  # no image of that class
    assert per_class["dog"] == 1.0 and per_class["fox"] == 0.5


def test_duplicate_class_names_are_told_apart(tmp_path: Path) -> None:
    data = make_classification_data(tmp_path, [0, 1], names=("sign", "sign"))
    preds = ClassPredictions(data.image_ids, one_hot_logits([0, 0], k=2))
    assert per_class_accuracy(preds, data) == {"sign (id 10)": 1.0, "sign (id 20)": 0.0}


def test_missing_prediction_or_wrong_width_raise(data: ClassificationData) -> None:
    partial = ClassPredictions(data.image_ids[:3], one_hot_logits([0, 0, 0]))
    with pytest.raises(DataError, match="do not cover"):
        accuracy(partial, data)
    wide = ClassPredictions(data.image_ids, one_hot_logits([0] * 7, k=4))
    with pytest.raises(DataError, match="4 columns"):
        accuracy(wide, data)

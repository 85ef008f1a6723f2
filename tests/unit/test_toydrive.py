"""toydrive: deterministic, long-tailed, partly at night, valid COCO, written atomically."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from robustness_harness.data import (
    GENERATOR_VERSION,
    TOYDRIVE_CLASSES,
    CocoDetectionData,
    generate_toydrive,
    toydrive_dataset,
)
from robustness_harness.data.toydrive import MAX_OBJECTS, MAX_OCCLUDED
from robustness_harness.errors import DataError


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _pixels(images_dir: Path, doc: dict[str, Any]) -> list[np.ndarray]:
    return [np.asarray(Image.open(images_dir / img["file_name"])) for img in doc["images"]]


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """300 training images (statistics need a larger sample)."""
    out = tmp_path_factory.mktemp("toydrive") / "large"
    return generate_toydrive(out, seed=0, n_train=300, n_val=0)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("toydrive") / "small"
    return generate_toydrive(out, seed=0, n_train=40, n_val=20)


def test_layout(small: dict[str, Path]) -> None:
    out = small["images"].parent
    assert small == {"train": out / "train.json", "val": out / "val.json", "images": out / "images"}
    doc = _json(small["train"])
    assert len(doc["images"]) == 40 and len(_json(small["val"])["images"]) == 20
    assert doc["images"][0]["file_name"] == "train/000001.png"
    assert (small["images"] / "val" / "000020.png").is_file()
    assert [c["name"] for c in doc["categories"]] == list(TOYDRIVE_CLASSES)
    assert [c["id"] for c in doc["categories"]] == [1, 2, 3, 4, 5, 6]
    marker = _json(out / "done.json")["marker"]
    assert marker["generator_version"] == GENERATOR_VERSION
    assert marker["params"] == {"seed": 0, "n_train": 40, "n_val": 20, "image_size": 128}


def test_loads_as_coco(small: dict[str, Path]) -> None:
    for split in ("train", "val"):
        data = CocoDetectionData.load(small["images"], small[split])
        assert data.category_names == list(TOYDRIVE_CLASSES)
        image = data.load_image(data.image_ids[0])
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert {data.attribute(i, "timeofday") for i in data.image_ids} <= {"day", "night"}


def test_deterministic(small: dict[str, Path], tmp_path: Path) -> None:
    again = generate_toydrive(tmp_path / "again", seed=0, n_train=40, n_val=20)
    for split in ("train", "val"):
        assert again[split].read_bytes() == small[split].read_bytes()
        doc = _json(small[split])
        for a, b in zip(_pixels(small["images"], doc), _pixels(again["images"], doc), strict=True):
            np.testing.assert_array_equal(a, b)
    other = generate_toydrive(tmp_path / "other", seed=1, n_train=40, n_val=20)
    assert other["train"].read_bytes() != small["train"].read_bytes()
    first = [np.asarray(Image.open(p["images"] / "train/000001.png")) for p in (small, other)]
    assert not np.array_equal(*first)


def test_val_is_not_train(small: dict[str, Path]) -> None:
    train = np.asarray(Image.open(small["images"] / "train/000001.png"))
    val = np.asarray(Image.open(small["images"] / "val/000001.png"))
    assert not np.array_equal(train, val)


def test_class_frequencies_are_long_tailed(large: dict[str, Path]) -> None:
    doc = _json(large["train"])
    names = {c["id"]: c["name"] for c in doc["categories"]}
    counts = Counter(names[a["category_id"]] for a in doc["annotations"])
    total = sum(counts.values())
    freq = {k: counts[k] / total for k in TOYDRIVE_CLASSES}
    assert set(counts) == set(TOYDRIVE_CLASSES)
    assert max(freq, key=freq.__getitem__) == "car"
    assert 0.35 < freq["car"] < 0.55
    assert min(freq, key=freq.__getitem__) == "train"
    assert freq["train"] <= 0.03
    assert freq["bus"] < freq["truck"] and freq["bus"] < freq["bicycle"] < freq["person"]


def test_night_fraction_and_darkness(large: dict[str, Path]) -> None:
    doc = _json(large["train"])
    night = [img["attributes"]["timeofday"] == "night" for img in doc["images"]]
    assert 0.1 <= np.mean(night) <= 0.3
    brightness = np.array([p.mean() for p in _pixels(large["images"], doc)])
    is_night = np.array(night)
    assert brightness[is_night].mean() < 0.6 * brightness[~is_night].mean()


def test_boxes_are_valid(large: dict[str, Path]) -> None:
    doc = _json(large["train"])
    per_image = Counter(a["image_id"] for a in doc["annotations"])
    assert max(per_image.values()) <= MAX_OBJECTS
    assert np.mean([per_image[img["id"]] for img in doc["images"]]) >= 2.5
    for ann in doc["annotations"]:
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
        assert w >= 1 and h >= 1
        assert ann["area"] == w * h and ann["iscrowd"] == 0
        assert 0.0 <= ann["occluded"] <= MAX_OCCLUDED
        assert 0.0 <= ann["truncated"] <= 0.7
    sizes = [max(a["bbox"][2:]) for a in doc["annotations"]]
    assert min(sizes) <= 16 and max(sizes) >= 60  # far and near objects
    occluded = [a["occluded"] for a in doc["annotations"]]
    assert 0.1 < np.mean([o > 0.2 for o in occluded]) < 0.5


def test_marker_is_respected(small: dict[str, Path]) -> None:
    out = small["images"].parent
    before = small["train"].stat().st_mtime_ns
    assert generate_toydrive(out, seed=0, n_train=40, n_val=20) == small
    assert small["train"].stat().st_mtime_ns == before


def test_leftover_temp_dir_and_stale_output(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    leftover = tmp_path / ".toy.tmp"
    (leftover / "images").mkdir(parents=True)
    (leftover / "train.json").write_text("half written")
    out.mkdir()
    (out / "train.json").write_text("no done.json marker: incomplete")
    paths = generate_toydrive(out, seed=3, n_train=4, n_val=2)
    assert len(_json(paths["train"])["images"]) == 4
    assert not leftover.exists()
    # other parameters in the same directory replace it
    paths = generate_toydrive(out, seed=3, n_train=5, n_val=2)
    assert len(_json(paths["train"])["images"]) == 5
    assert {n for n in os.listdir(tmp_path) if not n.endswith(".lock")} == {"toy"}


def test_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.params\.n_train.*fix:"):
        generate_toydrive(tmp_path / "x", n_train=-1)
    with pytest.raises(DataError, match="image_size"):
        generate_toydrive(tmp_path / "x", image_size=16)
    assert not (tmp_path / "x").exists()


def test_registry_entry(tmp_path: Path) -> None:
    splits = toydrive_dataset(tmp_path, seed=0, n_train=6, n_val=3)
    assert set(splits) == {"train", "val"}
    assert len(splits["train"]) == 6 and len(splits["val"]) == 3
    (folder,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert folder.name.startswith(f"toydrive-v{GENERATOR_VERSION}-")
    again = toydrive_dataset(tmp_path, seed=0, n_train=6, n_val=3)
    assert again["val"].fingerprint == splits["val"].fingerprint
    toydrive_dataset(tmp_path, seed=1, n_train=6, n_val=3)
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2


def test_other_image_size(tmp_path: Path) -> None:
    paths = generate_toydrive(tmp_path / "big", n_train=3, n_val=1, image_size=192)
    data = CocoDetectionData.load(paths["images"], paths["train"])
    assert data.load_image(1).shape == (192, 192, 3)
    assert all(b[0] + b[2] <= 192 for a in data.coco_gt()["annotations"] for b in [a["bbox"]])

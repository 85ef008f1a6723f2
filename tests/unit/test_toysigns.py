"""toysigns: deterministic, long-tailed, day/dusk, one annotation per image, atomic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robustness_harness.cli import main
from robustness_harness.data.builtin import toysigns_dataset, toysigns_dir
from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.data.toysigns import (
    FREQUENCY_ORDER,
    GENERATOR_VERSION,
    IMBALANCE,
    TOYSIGNS_CLASSES,
    class_counts,
    generate_toysigns,
)
from robustness_harness.errors import DataError

N_TRAIN, N_VAL = 240, 60


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("toysigns") / "small"
    return generate_toysigns(out, seed=0, n_train=N_TRAIN, n_val=N_VAL)


@pytest.fixture(scope="module")
def train(small: dict[str, Path]) -> ClassificationData:
    return ClassificationData.load(small["images"], small["train"])


def _files(paths: dict[str, Path]) -> dict[str, bytes]:
    root = paths["images"].parent
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "done.json"
    }


def test_layout_and_coco(small: dict[str, Path], train: ClassificationData) -> None:
    out = small["images"].parent
    assert small == {"train": out / "train.json", "val": out / "val.json", "images": out / "images"}
    marker = json.loads((out / "done.json").read_text())["marker"]
    assert marker["generator_version"] == GENERATOR_VERSION
    assert marker["params"] == {"seed": 0, "n_train": N_TRAIN, "n_val": N_VAL, "image_size": 32}
    val = ClassificationData.load(small["images"], small["val"])
    assert (len(train), len(val)) == (N_TRAIN, N_VAL)
    assert train.class_names == list(TOYSIGNS_CLASSES) and train.num_classes >= 10
    doc = json.loads(small["train"].read_text())
    assert len(doc["annotations"]) == len(doc["images"])
    for ann in doc["annotations"]:
        x, y, w, h = ann["bbox"]
        assert min(x, y) >= 0 and min(w, h) > 4 and max(x + w, y + h) <= 32
        assert ann["image_id"] == ann["id"] and 0 <= ann["occluded"] <= 1
    for image_id in train.image_ids[:20]:
        image = train.load_image(image_id)
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8


def test_deterministic(small: dict[str, Path], tmp_path: Path) -> None:
    again = generate_toysigns(tmp_path / "again", seed=0, n_train=N_TRAIN, n_val=N_VAL)
    assert _files(again) == _files(small)
    other = generate_toysigns(tmp_path / "other", seed=1, n_train=N_TRAIN, n_val=N_VAL)
    theirs, ours = _files(other), _files(small)
    assert theirs["train.json"] != ours["train.json"]
    assert theirs["images/train/000001.png"] != ours["images/train/000001.png"]


def test_long_tailed_class_counts(train: ClassificationData) -> None:
    counts = class_counts(6000)
    assert sum(counts.values()) == 6000
    ordered = [counts[c] for c in FREQUENCY_ORDER]
    assert ordered == sorted(ordered, reverse=True)
    assert ordered[0] / ordered[-1] == pytest.approx(IMBALANCE, rel=0.02)
    expected = class_counts(N_TRAIN)
    assert train.class_counts().tolist() == [expected[c] for c in TOYSIGNS_CLASSES]
    assert min(expected.values()) > 0


def test_lighting_split(train: ClassificationData) -> None:
    dusk = train.select({"lighting": "dusk"})
    day = train.select({"lighting": "day"})
    assert isinstance(dusk, ClassificationData)
    assert len(dusk) + len(day) == len(train) and 0.15 < len(dusk) / len(train) < 0.45
    assert {dusk.attribute(i, "lighting") for i in dusk.image_ids} == {"dusk"}
    assert dusk.labels().tolist() == [train.label(i) for i in dusk.image_ids]

    def brightness(data: ClassificationData) -> float:
        return float(np.mean([data.load_image(i).mean() for i in data.image_ids]))

    assert brightness(dusk) < 0.7 * brightness(day)
    with pytest.raises(DataError, match="lighting has values: day, dusk"):
        train.select({"lighting": "night"})


def test_dataset_registry_reuses(tmp_path: Path) -> None:
    splits = toysigns_dataset(tmp_path, n_train=24, n_val=12)
    assert {k: len(v) for k, v in splits.items()} == {"train": 24, "val": 12}
    assert all(isinstance(v, ClassificationData) for v in splits.values())
    done = toysigns_dir(tmp_path, n_train=24, n_val=12) / "done.json"
    stamp = done.stat().st_mtime_ns
    toysigns_dataset(tmp_path, n_train=24, n_val=12)
    assert done.stat().st_mtime_ns == stamp
    assert toysigns_dir(tmp_path, n_train=24, n_val=12) != toysigns_dir(tmp_path, seed=1)


def test_stale_output_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "signs"
    generate_toysigns(out, n_train=6, n_val=0)
    paths = generate_toysigns(out, n_train=4, n_val=2)
    assert len(json.loads(paths["train"].read_text())["images"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [".signs.lock", "signs"]


@pytest.mark.parametrize(
    ("param", "value"), [("n_train", -1), ("seed", -2), ("image_size", 8), ("n_val", 1.5)]
)
def test_bad_parameters(tmp_path: Path, param: str, value: object) -> None:
    with pytest.raises(DataError, match=f"toysigns parameter {param}="):
        generate_toysigns(tmp_path / "x", **{param: value})  # type: ignore[arg-type]


def test_cli_gen_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["gen-data", "toysigns", "--out", str(tmp_path / "ts"), "--n-train", "3"]
    assert main([*argv, "--n-val", "2"]) == 0
    assert "train:" in capsys.readouterr().out
    val = json.loads((tmp_path / "ts" / "val.json").read_text())
    assert len(val["images"]) == 2 and len(val["annotations"]) == 2

"""The COCO reader: labels, targets, splits, attributes and errors on malformed data."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from robustness_harness.data import CocoDetectionData, DetectionTorchDataset, collate_detection
from robustness_harness.errors import DataError


def _doc() -> dict[str, Any]:
    return {
        "images": [
            {"id": 10, "file_name": "a.png", "width": 8, "height": 6,
             "attributes": {"timeofday": "day"}},
            {"id": 20, "file_name": "sub/b.png", "width": 8, "height": 6, "weather": "rain",
             "attributes": {"timeofday": "night"}},
            {"id": 30, "file_name": "c.png", "width": 8, "height": 6,
             "attributes": {"timeofday": "day"}},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 1, 3, 2], "area": 6,
             "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [0, 0, 2, 2], "area": 4,
             "iscrowd": 1},
            {"id": 3, "image_id": 20, "category_id": 3, "bbox": [2, 2, 4, 3], "area": 12,
             "iscrowd": 0},
            {"id": 4, "image_id": 20, "category_id": 7, "bbox": [5, 5, 0.5, 1], "area": 0.5,
             "iscrowd": 0},
            {"id": 5, "image_id": 30, "category_id": 5, "bbox": [0, 1, 7, 4]},
        ],
        "categories": [
            {"id": 7, "name": "truck"}, {"id": 3, "name": "car"}, {"id": 5, "name": "person"},
        ],
    }  # fmt: skip


def _write(tmp_path: Path, doc: Any, name: str = "ann.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=1))
    return path


@pytest.fixture
def coco(tmp_path: Path) -> tuple[Path, Path]:
    """A three-image COCO set with tiny PNGs in ``tmp_path/images``."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for k, name in enumerate(["a.png", "sub/b.png", "c.png"]):
        pixels = np.full((6, 8, 3), 40 * (k + 1), dtype=np.uint8)
        Image.fromarray(pixels).save(images / name)
    return images, _write(tmp_path, _doc())


@pytest.fixture
def data(coco: tuple[Path, Path]) -> CocoDetectionData:
    return CocoDetectionData.load(*coco)


def test_load_basics(data: CocoDetectionData, coco: tuple[Path, Path]) -> None:
    assert len(data) == 3
    assert data.image_ids == [10, 20, 30]
    assert data.images_dir == coco[0] and data.annotations_file == coco[1]
    assert [c["id"] for c in data.categories] == [3, 5, 7]
    assert data.category_names == ["car", "person", "truck"]
    assert data.image_info(20)["file_name"] == "sub/b.png"
    assert data.image_path(20) == coco[0] / "sub" / "b.png"
    assert "ann.json" in repr(data)


def test_labels_are_contiguous(data: CocoDetectionData) -> None:
    assert [data.label_of(c) for c in (3, 5, 7)] == [1, 2, 3]
    assert [data.category_of(lab) for lab in (1, 2, 3)] == [3, 5, 7]
    with pytest.raises(DataError, match="label 0"):
        data.category_of(0)
    with pytest.raises(DataError, match="category id 99"):
        data.label_of(99)


def test_load_image(data: CocoDetectionData) -> None:
    image = data.load_image(20)
    assert image.dtype == np.uint8 and image.shape == (6, 8, 3)
    assert int(image[0, 0, 0]) == 80


def test_target_excludes_crowd_and_tiny_boxes(data: CocoDetectionData) -> None:
    target = data.target(10)
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["boxes"].tolist() == [[1.0, 1.0, 4.0, 3.0]]  # xyxy; the crowd box is gone
    assert target["labels"].tolist() == [3]
    target = data.target(20)  # the 0.5 px wide box is skipped
    assert target["boxes"].tolist() == [[2.0, 2.0, 6.0, 5.0]] and target["labels"].tolist() == [1]
    assert len(data.annotations(10)) == 2  # annotations() keeps crowd ones


def test_missing_keys_get_coco_defaults(data: CocoDetectionData) -> None:
    (ann,) = data.annotations(30)
    assert ann["iscrowd"] == 0 and ann["area"] == 28.0 and ann["id"] == 5


def test_subset_and_limit(data: CocoDetectionData) -> None:
    sub = data.subset([30, 10])
    assert sub.image_ids == [10, 30]  # dataset order
    gt = sub.coco_gt()
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 5]
    assert len(gt["categories"]) == 3
    assert data.limit(2).image_ids == [10, 20]
    assert data.limit(None) is data and data.limit(10) is data
    with pytest.raises(DataError, match="image id 99"):
        data.subset([99])
    with pytest.raises(DataError, match="image id 20"):
        sub.annotations(20)


def test_attributes_from_all_sources(data: CocoDetectionData, coco: tuple[Path, Path]) -> None:
    images, ann = coco
    assert data.attribute(20, "timeofday") == "night"  # images[i].attributes
    assert data.attribute(20, "weather") == "rain"  # top-level image key
    assert data.attribute(10, "weather") is None
    sidecar = ann.with_name("ann.attributes.json")
    sidecar.write_text(json.dumps({"10": {"weather": "sun", "camera": 2}, "30": {"camera": 1}}))
    data = CocoDetectionData.load(images, ann)
    assert data.attribute(10, "weather") == "sun"
    assert data.attribute(20, "weather") == "rain"
    assert data.select({"camera": 2}).image_ids == [10]
    assert data.select({"camera": "1"}).image_ids == [30]  # YAML may give text
    assert data.attribute_keys() == ["camera", "timeofday", "weather"]


def test_select(data: CocoDetectionData) -> None:
    assert data.select({"timeofday": "day"}).image_ids == [10, 30]
    assert data.select({"timeofday": "night"}).image_ids == [20]
    assert data.select({"timeofday": ["night", "dusk"]}).image_ids == [20]
    night = data.select({"timeofday": "night", "weather": "rain"})
    assert night.image_ids == [20]
    assert [a["id"] for a in night.coco_gt()["annotations"]] == [3, 4]


def test_empty_split_lists_existing_values(data: CocoDetectionData) -> None:
    with pytest.raises(DataError) as err:
        data.select({"timeofday": "dusk"}, field="checks.night_map.split")
    text = str(err.value)
    assert "timeofday has values: day, night" in text
    assert "ann.json" in text and "checks.night_map.split" in text and "fix:" in text
    with pytest.raises(DataError, match=r"no image has attribute 'season'.*timeofday"):
        data.select({"season": "winter"})


def test_missing_image_file_names_the_file(
    data: CocoDetectionData, coco: tuple[Path, Path]
) -> None:
    (coco[0] / "sub" / "b.png").unlink()
    with pytest.raises(DataError) as err:
        data.load_image(20)
    text = str(err.value)
    assert "b.png" in text and "image id 20" in text and "images[1].file_name" in text
    assert "fix:" in text
    with pytest.raises(DataError, match=r"b\.png"):
        _ = data.fingerprint


def test_unreadable_image(data: CocoDetectionData, coco: tuple[Path, Path]) -> None:
    (coco[0] / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"a\.png.*cannot be read"):
        data.load_image(10)


def test_fingerprint(data: CocoDetectionData, coco: tuple[Path, Path]) -> None:
    fp = data.fingerprint
    assert len(fp) == 64 and data.fingerprint == fp
    assert CocoDetectionData.load(*coco).fingerprint == fp
    assert data.limit(2).fingerprint != fp
    doc = _doc()
    doc["annotations"][0]["bbox"] = [1, 1, 3, 3]
    changed = CocoDetectionData.load(coco[0], _write(coco[1].parent, doc, "other.json"))
    assert changed.fingerprint != fp
    with Image.open(coco[0] / "c.png") as img:
        img.resize((16, 12)).save(coco[0] / "c.png")  # new file size
    assert CocoDetectionData.load(*coco).fingerprint != fp


def test_image_edited_in_place_changes_the_fingerprint(coco: tuple[Path, Path]) -> None:
    """Same name, same byte size, other pixels: the cached results must not be reused."""
    fp = CocoDetectionData.load(*coco).fingerprint
    path = coco[0] / "a.png"
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF  # flip one byte inside the file: the size stays the same
    path.write_bytes(bytes(raw))
    assert len(raw) == path.stat().st_size
    assert CocoDetectionData.load(*coco).fingerprint != fp


def test_coco_gt_works_with_pycocotools(data: CocoDetectionData) -> None:
    pycocotools_coco = pytest.importorskip("pycocotools.coco")
    gt = pycocotools_coco.COCO()
    gt.dataset = copy.deepcopy(data.coco_gt())
    gt.createIndex()
    assert sorted(gt.getImgIds()) == [10, 20, 30]
    assert len(gt.getAnnIds()) == 5


def test_torch_dataset(data: CocoDetectionData) -> None:
    ds = DetectionTorchDataset(data, image_ids=[20, 10])
    assert len(ds) == 2
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 6, 8)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert int(target["image_id"]) == 20
    images, targets = collate_detection([ds[0], ds[1]])
    assert isinstance(images, list) and len(images) == 2 and len(targets) == 2
    assert [int(t["image_id"]) for t in targets] == [20, 10]


def test_load_of_a_400_image_set(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    doc: dict[str, Any] = {"images": [], "annotations": [], "categories": []}
    doc["categories"] = [{"id": i, "name": f"c{i}"} for i in range(1, 7)]
    for i in range(1, 401):
        doc["images"].append({"id": i, "file_name": f"{i}.png", "width": 128, "height": 128,
                              "attributes": {"timeofday": "day"}})  # fmt: skip
        for k in range(6):
            ann = {"id": i * 10 + k, "image_id": i, "category_id": 1 + k, "bbox": [k, k, 9, 9]}
            doc["annotations"].append({**ann, "area": 81, "iscrowd": 0, "occluded": 0.1})
    path = _write(tmp_path, doc)
    data = CocoDetectionData.load(tmp_path / "images", path)
    assert len(data) == 400 and len(data.coco_gt()["annotations"]) == 2400


# -- malformed data ---------------------------------------------------------------------


def _set(path: str, value: Any) -> Any:
    """A mutation of ``_doc()``: set ``value`` at the dotted ``path`` (``images.1.id``)."""

    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
        return doc

    return mutate


_DELETE = object()

MALFORMED = {
    "missing images": (_set("images", _DELETE), "images", "missing"),
    "missing annotations": (_set("annotations", _DELETE), "annotations", "missing"),
    "missing categories": (_set("categories", _DELETE), "categories", "missing"),
    "images not a list": (_set("images", {"id": 1}), "images", "not a list"),
    "duplicate image id": (_set("images.2.id", 10), "images[2].id", "duplicate image id 10"),
    "image id not int": (_set("images.0.id", "ten"), "images[0].id", "not an integer"),
    "image without file_name": (
        _set("images.1.file_name", _DELETE), "images[1].file_name", "file_name"
    ),
    "duplicate category id": (
        _set("categories.2.id", 7), "categories[2].id", "duplicate category id 7"
    ),
    "unknown image_id": (
        _set("annotations.3.image_id", 99), "annotations[3].image_id", "image_id 99"
    ),
    "unknown category_id": (
        _set("annotations.4.category_id", 4), "annotations[4].category_id", "category_id 4"
    ),
    "bbox with 3 numbers": (
        _set("annotations.2.bbox", [1, 2, 3]), "annotations[2].bbox", "4 finite numbers"
    ),
    "bbox with text": (
        _set("annotations.0.bbox", [1, 2, "3", 4]), "annotations[0].bbox", "4 finite numbers"
    ),
    "bbox missing": (_set("annotations.1.bbox", _DELETE), "annotations[1].bbox", "4 finite"),
    "negative width": (
        _set("annotations.2.bbox", [1, 2, -3, 4]), "annotations[2].bbox", "negative width"
    ),
    "duplicate annotation id": (
        _set("annotations.4.id", 1), "annotations[4].id", "duplicate annotation id 1"
    ),
    "annotation not a mapping": (_set("annotations.0", [1, 2]), "annotations[0]", "mapping"),
}  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_annotations(coco: tuple[Path, Path], case: str) -> None:
    mutate, field, message = MALFORMED[case]
    path = _write(coco[1].parent, mutate(_doc()), "bad.json")
    with pytest.raises(DataError) as err:
        CocoDetectionData.load(coco[0], path)
    text = str(err.value)
    assert "bad.json" in text
    assert f": {field}: " in text
    assert message in text
    assert "(fix: " in text


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        ('{"images": [\n  {"id": 1,}\n]}', "line 2 column 12", "not valid JSON"),
        ("[1, 2]", "(top level)", "not a mapping"),
        ("", "line 1 column 1", "not valid JSON"),
    ],
    ids=["syntax", "list", "empty"],
)
def test_not_a_coco_file(coco: tuple[Path, Path], content: str, field: str, message: str) -> None:
    path = _write(coco[1].parent, content, "bad.json")
    with pytest.raises(DataError) as err:
        CocoDetectionData.load(coco[0], path)
    text = str(err.value)
    assert "bad.json" in text and field in text and message in text and "fix:" in text


def test_missing_annotation_file(coco: tuple[Path, Path]) -> None:
    with pytest.raises(DataError) as err:
        CocoDetectionData.load(coco[0], coco[1].with_name("nope.json"))
    assert "nope.json" in str(err.value) and "does not exist" in str(err.value)
    assert "fix:" in str(err.value)


def test_missing_images_dir(coco: tuple[Path, Path]) -> None:
    with pytest.raises(DataError) as err:
        CocoDetectionData.load(coco[0].with_name("no-images"), coco[1])
    text = str(err.value)
    assert "no-images" in text and "images" in text and "fix:" in text


def test_bad_sidecar(coco: tuple[Path, Path]) -> None:
    coco[1].with_name("ann.attributes.json").write_text('{"10": "day"}')
    with pytest.raises(DataError) as err:
        CocoDetectionData.load(*coco)
    assert "ann.attributes.json" in str(err.value) and ": 10: " in str(err.value)

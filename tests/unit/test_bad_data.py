"""Every malformed COCO dataset in tests/bad_inputs/data gives one self-contained error.

Each case is a JSON file: ``expect`` (substrings of the error: the field, the problem,
a word of the fix) and what to put on disk: ``annotations`` (a COCO document) or
``annotations_text`` / ``annotations_latin1`` (raw text), ``files`` (image files to
write: ``png``, ``text`` or ``truncated``; default a valid PNG for every image),
``images_dir: missing``, ``sidecar_text`` (the attributes sidecar), and what to do after
loading: ``load_image`` (an image id) or ``select`` (a split).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.errors import DataError

CASES_DIR = Path(__file__).resolve().parents[1] / "bad_inputs" / "data"
CASES = sorted(CASES_DIR.glob("*.json"))


def png_bytes(size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (90, 120, 30)).save(buf, format="PNG")
    return buf.getvalue()


FILE_CONTENT = {
    "png": png_bytes(),
    "text": b"this is not an image\n",
    "truncated": png_bytes(64)[:60],
}


def materialize(case: dict[str, Any], root: Path) -> tuple[Path, Path]:
    """Write the case's annotation file, sidecar and images under ``root``."""
    images, annotations = root / "images", root / "annotations.json"
    if "annotations_text" in case:
        annotations.write_text(case["annotations_text"], encoding="utf-8")
    elif "annotations_latin1" in case:
        annotations.write_bytes(case["annotations_latin1"].encode("latin-1"))
    else:
        annotations.write_text(json.dumps(case["annotations"]), encoding="utf-8")
    if "sidecar_text" in case:
        (root / "annotations.attributes.json").write_text(case["sidecar_text"])
    if case.get("images_dir") == "missing":
        return images, annotations
    images.mkdir()
    files = case.get("files")
    if files is None:
        doc = case.get("annotations")
        entries = doc.get("images") if isinstance(doc, dict) else None
        names = [i.get("file_name") for i in entries or [] if isinstance(i, dict)]
        files = dict.fromkeys((n for n in names if n), "png")
    for name, kind in files.items():
        (images / name).write_bytes(FILE_CONTENT[kind])
    return images, annotations


def use(case: dict[str, Any], images: Path, annotations: Path) -> None:
    """Load the dataset and do what a run does with it first."""
    data = CocoDetectionData.load(images, annotations)
    if "load_image" in case:
        data.load_image(case["load_image"])
    elif "select" in case:
        data.select(case["select"])
    else:
        data.fingerprint  # noqa: B018 - stats every image file, as cache keys do


def test_there_are_enough_bad_datasets() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_exception_bad_dataset(path: Path, tmp_path: Path) -> None:
    case = json.loads(path.read_text())
    images, annotations = materialize(case, tmp_path)
    with pytest.raises(DataError) as info:
        use(case, images, annotations)
    err = info.value
    text = str(err)
    assert "\n" not in text, "the error must be one self-contained line"
    assert err.file is not None and str(tmp_path) in err.file, "the error names the file"
    assert err.field, "the error names the field"
    assert err.hint, "the error names a fix"
    for part in case["expect"]:
        assert part in text, f"{part!r} not in {text!r}"


def test_a_good_dataset_loads(tmp_path: Path) -> None:
    """The corpus's base document is valid: each case breaks exactly one thing."""
    base = json.loads((CASES_DIR / "image_file_missing.json").read_text())["annotations"]
    images, annotations = materialize({"annotations": base}, tmp_path)
    data = CocoDetectionData.load(images, annotations)
    assert len(data) == 2 and data.load_image(2).shape == (16, 16, 3)
    assert len(data.select({"timeofday": "night"})) == 1

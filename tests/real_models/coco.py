"""Writing small COCO-format image sets for tests (classification and detection)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Picture:
    """One image to write: its pixels (uint8 HWC), category and boxes (COCO xywh; None,
    for a classification set: one annotation covering the image; empty: no object)."""

    name: str
    pixels: np.ndarray
    category_id: int
    boxes: Sequence[Sequence[float]] | None = None


def write_coco(
    directory: Path, pictures: Sequence[Picture], categories: Mapping[int, str]
) -> dict[str, Path]:
    """PNG files under ``directory/images`` and ``directory/annotations.json``; returns
    ``{"images": dir, "annotations": file}``."""
    images_dir = directory / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, picture in enumerate(pictures, start=1):
        file_name = f"{picture.name}.png"
        Image.fromarray(picture.pixels).save(images_dir / file_name)
        height, width = picture.pixels.shape[:2]
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        boxes = [(0, 0, width, height)] if picture.boxes is None else picture.boxes
        for box in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": picture.category_id,
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
    doc = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for i, n in sorted(categories.items())],
    }
    path = directory / "annotations.json"
    path.write_text(json.dumps(doc, indent=1))
    return {"images": images_dir, "annotations": path}

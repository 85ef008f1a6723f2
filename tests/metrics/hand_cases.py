"""Hand-made detection cases shared by the metric tests (boxes are COCO xywh)."""

from __future__ import annotations

from typing import Any

A, B = (10.0, 10.0, 20.0, 20.0), (100.0, 100.0, 40.0, 40.0)  # image 1: A cat 1, B cat 2
C, CROWD = (50.0, 50.0, 30.0, 30.0), (200.0, 200.0, 100.0, 100.0)  # image 2: cat 1


class Targets:
    """A duck-typed detection set: ``image_ids`` and ``coco_gt()``."""

    def __init__(self, gt: dict[str, Any]) -> None:
        self._gt = gt
        self.image_ids = [img["id"] for img in gt["images"]]

    def coco_gt(self) -> dict[str, Any]:
        return self._gt

"""Cached model outputs: per-image detections or class logits, with stable fingerprints."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file


@dataclass(frozen=True)
class Detections:
    """Detections of one image: ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,),
    ``category_ids`` (N,) COCO category ids."""

    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray

    @staticmethod
    def empty() -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
        )


@dataclass(frozen=True)
class DetectionPredictions:
    """Detections for a set of images, keyed by COCO image id."""

    by_image: Mapping[int, Detections]
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    @property
    def image_ids(self) -> list[int]:
        return sorted(self.by_image)

    def subset(self, image_ids: Iterable[int]) -> DetectionPredictions:
        """The predictions of ``image_ids`` only (images without predictions are empty)."""
        return DetectionPredictions(
            {i: self.by_image.get(i, Detections.empty()) for i in image_ids}
        )

    def to_coco_results(self) -> list[dict]:
        """COCO result dicts: ``image_id``, ``category_id``, ``bbox`` (xywh), ``score``."""
        out: list[dict] = []
        for image_id in self.image_ids:
            det = self.by_image[image_id]
            for box, score, cat in zip(det.boxes, det.scores, det.category_ids, strict=True):
                x0, y0, x1, y1 = (float(v) for v in box)
                out.append(
                    {
                        "image_id": int(image_id),
                        "category_id": int(cat),
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "score": float(score),
                    }
                )
        return out

    @property
    def fingerprint(self) -> str:
        """sha256 over image ids and the bytes of every array (stable across runs)."""
        if not self._fingerprint:
            h = hashlib.sha256()
            for image_id in self.image_ids:
                det = self.by_image[image_id]
                h.update(str(image_id).encode())
                for arr in (det.boxes, det.scores, det.category_ids):
                    h.update(f"{arr.dtype.str}{arr.shape}".encode())
                    h.update(np.ascontiguousarray(arr).tobytes())
            self._fingerprint.append(h.hexdigest())
        return self._fingerprint[0]

    def save(self, path: Path) -> None:
        """Write as safetensors (no pickle): one ``<id>.boxes|scores|category_ids`` each."""
        tensors: dict[str, np.ndarray] = {}
        for image_id, det in self.by_image.items():
            tensors[f"{image_id}.boxes"] = np.ascontiguousarray(det.boxes, np.float32)
            tensors[f"{image_id}.scores"] = np.ascontiguousarray(det.scores, np.float32)
            tensors[f"{image_id}.category_ids"] = np.ascontiguousarray(det.category_ids, np.int64)
        save_file(tensors, str(path))

    @staticmethod
    def load(path: Path) -> DetectionPredictions:
        tensors = load_file(str(path))
        ids = sorted({int(k.split(".", 1)[0]) for k in tensors})
        return DetectionPredictions(
            {
                i: Detections(
                    tensors[f"{i}.boxes"], tensors[f"{i}.scores"], tensors[f"{i}.category_ids"]
                )
                for i in ids
            }
        )


@dataclass(frozen=True)
class ClassPredictions:
    """Classifier outputs: ``logits`` (N, K) float32 for ``image_ids`` (N,), in order."""

    image_ids: list[int]
    logits: np.ndarray

    def __post_init__(self) -> None:
        if self.logits.ndim != 2 or self.logits.shape[0] != len(self.image_ids):
            raise ValueError(
                f"logits must be (N, K) with N = {len(self.image_ids)} images, "
                f"got {self.logits.shape}"
            )

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def probs(self) -> np.ndarray:
        """Softmax probabilities (N, K), computed in float64."""
        z = self.logits.astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    @property
    def top1(self) -> np.ndarray:
        """Predicted class index per image (N,)."""
        return self.logits.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        """Top-1 softmax probability per image (N,)."""
        return self.probs.max(axis=1)

    def subset(self, image_ids: Iterable[int]) -> ClassPredictions:
        """The rows of ``image_ids`` (each must have been predicted)."""
        row = {i: k for k, i in enumerate(self.image_ids)}
        ids = [int(i) for i in image_ids]
        missing = [i for i in ids if i not in row]
        if missing:
            raise KeyError(f"no prediction for image ids {missing[:5]}")
        return ClassPredictions(ids, self.logits[[row[i] for i in ids]])

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(np.asarray(self.image_ids, np.int64).tobytes())
        h.update(np.ascontiguousarray(self.logits, np.float32).tobytes())
        return h.hexdigest()

    def save(self, path: Path) -> None:
        """Write as safetensors: ``image_ids`` (N,) int64 and ``logits`` (N, K) float32."""
        save_file(
            {
                "image_ids": np.asarray(self.image_ids, np.int64),
                "logits": np.ascontiguousarray(self.logits, np.float32),
            },
            str(path),
        )

    @staticmethod
    def load(path: Path) -> ClassPredictions:
        tensors = load_file(str(path))
        return ClassPredictions([int(i) for i in tensors["image_ids"]], tensors["logits"])


Predictions = DetectionPredictions | ClassPredictions


def load_predictions(path: Path) -> Predictions:
    """Load either kind of saved predictions (class logits files hold ``logits``)."""
    with safe_open(str(path), framework="numpy") as f:
        is_class = "logits" in f.keys()  # noqa: SIM118 - safe_open has no __contains__
    return ClassPredictions.load(path) if is_class else DetectionPredictions.load(path)

"""Model × dataset → predictions: batched inference of detectors and classifiers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch
from torch import nn

from robustness_harness.predictions import ClassPredictions, DetectionPredictions, Detections


class LabelledImages(Protocol):
    """What inference needs of a dataset (``robustness_harness.data.CocoDetectionData`` fits)."""

    image_ids: list[int]

    def load_image(self, image_id: int) -> np.ndarray: ...

    def category_of(self, label: int) -> int: ...


def image_batches(
    ids: Sequence[int], batch_size: int, load: Callable[[int], np.ndarray]
) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    """``(image ids, uint8 HWC images)`` batch by batch, in order.

    The next batch is read in a background thread while the caller runs the model on
    this one (PNG/JPEG decoding releases the GIL), so reading hides behind inference.
    """
    chunks = [list(ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)]
    if not chunks:
        return

    def read(chunk: list[int]) -> list[np.ndarray]:
        return [load(image_id) for image_id in chunk]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-read") as reader:
        pending = reader.submit(read, chunks[0])
        for index, chunk in enumerate(chunks):
            arrays = pending.result()
            if index + 1 < len(chunks):
                pending = reader.submit(read, chunks[index + 1])
            yield chunk, arrays


def predict_detections(
    model: nn.Module,
    data: LabelledImages,
    *,
    image_ids: Sequence[int] | None = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    load: Callable[[int], np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DetectionPredictions:
    """Run ``model`` (eval mode, ``inference_mode``) over the images of ``data``.

    ``load(image_id)`` gives each uint8 HWC image (default ``data.load_image``; corrupted
    images come this way). Labels are mapped back to COCO category ids.
    """
    ids = list(data.image_ids if image_ids is None else image_ids)
    device = torch.device(device)
    model.to(device).eval()
    by_image: dict[int, Detections] = {}
    label_to_cat = np.vectorize(data.category_of, otypes=[np.int64])
    with torch.inference_mode():
        for chunk, arrays in image_batches(ids, batch_size, load or data.load_image):
            images = [
                torch.from_numpy(np.ascontiguousarray(array))
                .permute(2, 0, 1)
                .to(device, torch.float32)
                .div_(255.0)
                for array in arrays
            ]
            for image_id, out in zip(chunk, model(images), strict=True):
                by_image[image_id] = to_detections(out, label_to_cat)
            if progress is not None:
                progress(len(by_image), len(ids))
    return DetectionPredictions(by_image)


def predict_classes(
    model: nn.Module,
    data: LabelledImages,
    *,
    image_ids: Sequence[int] | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    load: Callable[[int], np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ClassPredictions:
    """Run a classifier (eval mode, ``inference_mode``) over the images of ``data``.

    Images go in as float (B, 3, H, W) in [0, 1] (normalisation belongs to the model);
    ``load(image_id)`` gives each uint8 HWC image (default ``data.load_image``).
    Returns the logits.
    """
    ids = list(data.image_ids if image_ids is None else image_ids)
    device = torch.device(device)
    model.to(device).eval()
    rows: list[np.ndarray] = []
    with torch.inference_mode():
        for _, arrays in image_batches(ids, batch_size, load or data.load_image):
            batch = torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))
            batch = batch.permute(0, 3, 1, 2).to(device, torch.float32).div_(255.0)
            rows.append(model(batch).float().cpu().numpy())
            if progress is not None:
                progress(sum(len(r) for r in rows), len(ids))
    logits = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
    return ClassPredictions(ids, logits.astype(np.float32))


def to_detections(out: dict[str, torch.Tensor], label_to_cat: Callable) -> Detections:
    """One image's model output → Detections with COCO category ids.

    Label 0 is the background slot of torchvision detectors; sigmoid heads (FCOS,
    RetinaNet) can still emit it, so those detections are dropped.
    """
    labels = out["labels"].cpu().numpy()
    keep = labels > 0
    labels = labels[keep]
    return Detections(
        boxes=out["boxes"].cpu().numpy()[keep].astype(np.float32),
        scores=out["scores"].cpu().numpy()[keep].astype(np.float32),
        category_ids=label_to_cat(labels) if len(labels) else labels.astype(np.int64),
    )

"""Model × dataset → predictions: batched inference of detectors and classifiers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from robustness_harness.data.labels import NO_CATEGORY, LabelSpace
from robustness_harness.errors import ModelInputError, ModelOutputError
from robustness_harness.inference.input_contract import first_detector_outputs, stack_images
from robustness_harness.inference.output_contract import check_detector_outputs
from robustness_harness.inference.predictions import (
    ClassPredictions,
    DetectionPredictions,
    Detections,
)


class LabelledImages(Protocol):
    """What inference needs of a dataset (``robustness_harness.data.CocoDetectionData`` fits)."""

    image_ids: list[int]
    label_space: LabelSpace

    def load_image(self, image_id: int) -> np.ndarray: ...


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
    images come this way). Labels are mapped to COCO category ids by
    ``data.label_space``. The output contract is checked on the first batch (and on
    later ones until one holds a detection): ``ModelOutputError`` names the mistake.
    """
    ids = list(data.image_ids if image_ids is None else image_ids)
    device = torch.device(device)
    model.to(device).eval()
    by_image: dict[int, Detections] = {}
    checked = False
    with torch.inference_mode():
        for chunk, arrays in image_batches(ids, batch_size, load or data.load_image):
            images = [
                torch.from_numpy(np.ascontiguousarray(array))
                .permute(2, 0, 1)
                .to(device, torch.float32)
                .div_(255.0)
                for array in arrays
            ]
            if by_image:
                outputs = forward(model, images, data, first=False)
            else:  # a classifier declared a detector is named as such
                call = functools.partial(forward, model, data=data, first=True)
                outputs = first_detector_outputs(model, images, call)
            if not checked:
                sizes = [(int(im.shape[1]), int(im.shape[2])) for im in images]
                checked = check_detector_outputs(outputs, sizes, data.label_space) > 0
            for image_id, out in zip(chunk, outputs, strict=True):
                by_image[image_id] = to_detections(out, data.label_space)
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
        for chunk, arrays in image_batches(ids, batch_size, load or data.load_image):
            paths = [_image_path(data, image_id) for image_id in chunk]
            batch = _to(stack_images(model, arrays, paths), device)
            rows.append(forward(model, batch, data, first=not rows).float().cpu().numpy())
            if progress is not None:
                progress(sum(len(r) for r in rows), len(ids))
    logits = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
    return ClassPredictions(ids, logits.astype(np.float32))


def forward(
    model: nn.Module, batch: torch.Tensor | list[torch.Tensor], data: object, *, first: bool
) -> Any:
    """``model(batch)``; on the ``first`` batch a ``RuntimeError`` (e.g. a layer sized for
    another image size) becomes a one-line ``ModelInputError`` naming the batch shape."""
    if not first:
        return model(batch)
    try:
        return model(batch)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as err:
        raise ModelInputError(
            f"model failed on a batch of shape {batch_shape(batch)} from data {data!r}: "
            f"{first_line(err)}",
            field="model",
            hint="set model.input.size or data.transform to the image size the model takes",
        ) from None


def batch_shape(batch: torch.Tensor | list[torch.Tensor]) -> str:
    """``(B, 3, H, W)`` of a batch tensor, or of a list of same-size CHW images."""
    if isinstance(batch, torch.Tensor):
        return str(tuple(batch.shape))
    shapes = list(dict.fromkeys(tuple(t.shape) for t in batch))
    if len(shapes) == 1:
        return str((len(batch), *shapes[0]))
    return f"{len(batch)} images of shapes {', '.join(map(str, shapes))}"


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if none)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def to_detections(out: dict[str, torch.Tensor], labels: LabelSpace) -> Detections:
    """One image's model output → Detections with COCO category ids.

    Detections whose label names no category of the data are dropped: label 0 (the
    background slot of torchvision detectors, which sigmoid heads such as FCOS and
    RetinaNet can still emit) and, for ``category_id`` labels, ids the data lack (COCO
    evaluation over the ground truth's categories ignores them too). A label no model
    of the space can emit (above K for ``index``, negative) is a ``ModelOutputError``.
    """
    raw = out["labels"].cpu().numpy()
    impossible = labels.impossible(raw)
    if impossible.any():
        raise ModelOutputError(
            f"the detector returned label {int(raw[impossible][0])}, outside "
            f"{_label_range(labels)} (model.labels: {labels.kind})",
            field="model",
            hint=f"build the model with num_classes = {labels.num_classes}, or set model.labels",
        )
    categories = labels.categories(raw)
    keep = categories != NO_CATEGORY
    return Detections(
        boxes=out["boxes"].cpu().numpy()[keep].astype(np.float32),
        scores=out["scores"].cpu().numpy()[keep].astype(np.float32),
        category_ids=categories[keep],
    )


def _label_range(labels: LabelSpace) -> str:
    """``0..K`` for ``index`` labels, ``ids >= 0`` for category ids."""
    return f"0..{len(labels.category_ids)}" if labels.kind == "index" else "ids >= 0"


def _image_path(data: object, image_id: int) -> Path | None:
    """The file of ``image_id`` when ``data`` knows it (for error messages)."""
    image_path = getattr(data, "image_path", None)
    return image_path(image_id) if callable(image_path) else None


def _to(
    batch: torch.Tensor | list[torch.Tensor], device: torch.device
) -> torch.Tensor | list[torch.Tensor]:
    """A batch tensor or a list of images on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    return [image.to(device) for image in batch]

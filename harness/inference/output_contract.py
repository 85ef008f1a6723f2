"""The detector output contract (DESIGN §11), checked on a model's first batch.

A detector returns one dict per input image, torchvision style: ``boxes`` (N, 4)
``[x1, y1, x2, y2]`` in input pixels, ``scores`` (N,) in [0, 1] and integer ``labels``
(N,) in the suite's ``model.labels`` space. A model that breaks it (boxes as
``[x, y, w, h]``, labels from 0) would score mAP 0 without a word, and every drop gate
against it would pass; so the first batch is checked and a ``ModelOutputError``
(field ``model``) names the likely mistake and its fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from robustness_harness.data.labels import LabelSpace
from robustness_harness.errors import ModelOutputError

OUTPUT_KEYS = ("boxes", "scores", "labels")
CONTRACT = (
    "return one dict per image: {'boxes': (N, 4) [x1, y1, x2, y2] in input pixels, "
    "'scores': (N,) in [0, 1], 'labels': (N,) int64}"
)
OF_DICTS = "of dicts with boxes, scores and labels"
BOX_MARGIN = 0.5
"""How far (a fraction of the image size) boxes may reach beyond the image edges."""


def check_detector_outputs(
    outputs: Any, sizes: Sequence[tuple[int, int]], labels: LabelSpace
) -> int:
    """Check one batch of detector outputs for images of ``sizes`` (H, W); returns the
    number of detections. Raises ``ModelOutputError`` naming the likely mistake."""
    arrays = [_arrays(out) for out in _per_image(outputs, len(sizes))]
    for (boxes, _, _), (height, width) in zip(arrays, sizes, strict=True):
        _check_boxes(boxes, height, width)
    scores = np.concatenate([s for _, s, _ in arrays])
    _check_scores(scores)
    _check_labels(np.concatenate([lab for _, _, lab in arrays]), labels)
    return len(scores)


def _fail(message: str, hint: str = CONTRACT) -> ModelOutputError:
    return ModelOutputError(f"the detector {message}", field="model", hint=hint)


def _describe(value: Any) -> str:
    """E.g. ``a Tensor of shape (2, 5)``, ``a dict with keys ['boxes']``, ``an int``."""
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    if isinstance(value, torch.Tensor | np.ndarray):
        return f"{article} {name} of shape {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return f"{article} {name} with keys {sorted(map(str, value))}"
    return f"{article} {name}"


def _per_image(outputs: Any, n_images: int) -> list[Mapping[str, Any]]:
    """The per-image dicts, after checking the outer structure."""
    if not isinstance(outputs, list | tuple):
        raise _fail(f"returned {_describe(outputs)}, not a list {OF_DICTS}")
    if len(outputs) != n_images:
        raise _fail(f"returned {len(outputs)} outputs for a batch of {n_images} images")
    for out in outputs:
        if not isinstance(out, Mapping):
            raise _fail(f"returned a list of {_describe(out)}, not {OF_DICTS}")
        missing = [k for k in OUTPUT_KEYS if k not in out]
        if missing:
            raise _fail(f"returned {_describe(out)} per image, without {', '.join(missing)}")
    return list(outputs)


def _arrays(out: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes, scores, labels)`` of one image as numpy arrays, shapes checked."""
    for key in OUTPUT_KEYS:
        if not isinstance(out[key], torch.Tensor):
            raise _fail(f"returned '{key}' as {_describe(out[key])}, not a torch.Tensor")
    boxes, scores, labels = (out[k].detach().cpu() for k in OUTPUT_KEYS)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise _fail(f"returned 'boxes' of shape {tuple(boxes.shape)}, not (N, 4)")
    n = boxes.shape[0]
    for key, value in (("scores", scores), ("labels", labels)):
        if tuple(value.shape) != (n,):
            raise _fail(f"returned '{key}' of shape {tuple(value.shape)} for {n} boxes")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise _fail(
            f"returned 'labels' of dtype {labels.dtype}",
            hint="return integer class labels (torch.int64)",
        )
    return boxes.double().numpy(), scores.double().numpy(), labels.long().numpy()


def _check_boxes(boxes: np.ndarray, height: int, width: int) -> None:
    if not len(boxes):
        return
    if not np.isfinite(boxes).all():
        bad = int((~np.isfinite(boxes)).any(axis=1).sum())
        raise _fail(f"returned {bad} of {len(boxes)} boxes with NaN or inf coordinates")
    inverted = int(((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).sum())
    if inverted:
        raise _fail(
            f"returned {inverted} of {len(boxes)} boxes with x2 < x1 or y2 < y1: "
            "boxes look like [x, y, w, h]",
            hint="return [x1, y1, x2, y2] in input pixels",
        )
    if min(height, width) >= 16 and boxes.max() <= 1.0:
        raise _fail(
            f"returned boxes that all lie within [0, 1] on a {width}x{height} image: "
            "boxes look normalised",
            hint="return [x1, y1, x2, y2] in input pixels (multiply by width and height)",
        )
    low = -BOX_MARGIN * np.array([width, height, width, height])
    high = (1 + BOX_MARGIN) * np.array([width, height, width, height])
    if ((boxes < low) | (boxes > high)).any():
        raise _fail(
            f"returned boxes spanning [{boxes.min():.1f}, {boxes.max():.1f}], far outside "
            f"the {width}x{height} input image",
            hint="return boxes in the input image's pixels, not those of a resized image",
        )


def _check_scores(scores: np.ndarray) -> None:
    if not len(scores):
        return
    if not (np.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1):
        raise _fail(
            f"returned scores in [{np.nanmin(scores):.3g}, {np.nanmax(scores):.3g}], not in [0, 1]",
            hint="return probabilities (the sigmoid or softmax of the logits)",
        )


def _check_labels(labels: np.ndarray, space: LabelSpace) -> None:
    if not len(labels):
        return
    if (labels < 0).any():
        raise _fail(f"returned negative labels (min {labels.min()})", hint=_label_hint(space))
    if space.kind == "category_id":
        _check_category_labels(labels, space)
    else:
        _check_index_labels(labels, space)


def _check_index_labels(labels: np.ndarray, space: LabelSpace) -> None:
    k = len(space.category_ids)
    present = set(labels.tolist())
    if 0 in present and k not in present and (k == 1 or present & set(range(1, k))):
        raise _fail(
            f"returned labels {_span(present)} for {k} categories: labels start at 0: "
            "torchvision detectors reserve 0 for background",
            hint="add 1 to the labels, or set model.labels",
        )
    if max(present) > k:
        looks_like_ids = present - {0} <= set(space.category_ids)
        raise _fail(
            f"returned labels up to {max(present)}, but model.labels: index means 1..{k} "
            f"(the {k} categories in id order)"
            + ("; they look like COCO category ids" if looks_like_ids else ""),
            hint="set model.labels: category_id"
            if looks_like_ids
            else f"build the model with num_classes = {k + 1}, or set model.labels",
        )


def _check_category_labels(labels: np.ndarray, space: LabelSpace) -> None:
    present = set(labels.tolist())
    if not present & set(space.category_ids):
        raise _fail(
            f"returned labels {_span(present)}, none of them a category id of the data "
            f"({_span(set(space.category_ids))}) as model.labels: category_id needs",
            hint="set model.labels: index if the model emits 1..K in category-id order",
        )


def _span(values: set[int]) -> str:
    """E.g. ``0..5`` or ``{1, 3, 7}``."""
    ordered = sorted(values)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}..{ordered[-1]}"
    shown = ", ".join(map(str, ordered[:8])) + (", ..." if len(ordered) > 8 else "")
    return "{" + shown + "}"


def _label_hint(space: LabelSpace) -> str:
    if space.kind == "index":
        k = len(space.category_ids)
        return f"return labels 1..{k} (0 is the background), or set model.labels"
    return "return the data's COCO category ids, or set model.labels: index"

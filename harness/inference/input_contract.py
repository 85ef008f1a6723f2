"""The declared input contract (``model.input``): a module placed in front of the model.

Every part of the harness (prediction, attacks, saliency, quantization, latency) feeds
models float RGB in [0, 1] at data resolution (DESIGN.md section 11). A model trained
on normalised, resized or grayscale input declares it in the suite::

    model: {factory: pkg.mod:fn, input: {normalize: imagenet, size: [224, 224]}}

and ``InputContract`` does the conversion inside the graph: grayscale (ITU-R 601-2
luma, as torchvision), resize (bilinear, antialiased), then ``(x - mean) / std``. The
user's model is the child ``model``; mean and std are non-persistent buffers, so the
wrapped state dict is the user's with a ``model.`` prefix and nothing else.

Classifiers (``InputContract``) take a (B, 3, H, W) batch, or a list of (3, H, W) images
of different sizes when ``size`` makes them equal. Detectors (``DetectorInputContract``)
take a list of images (and targets in training mode); each image is converted on its own
and ``size`` is refused at load (boxes would be in the resized frame). The forward
methods have fixed signatures so that torch.fx (FX quantization) can trace them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robustness_harness.errors import ModelInputError, ModelOutputError

NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
"""Named ``normalize`` values → (mean, std) per RGB channel."""

LUMA = (0.2989, 0.587, 0.114)
"""RGB → gray weights (ITU-R 601-2, as ``torchvision.transforms.functional.rgb_to_grayscale``)."""


@dataclass(frozen=True)
class Contract:
    """What the wrapper does: ``mean``/``std`` (None: no normalisation), ``grayscale``
    (one output channel), ``size`` (H, W; None: keep the data resolution)."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    grayscale: bool = False
    size: tuple[int, int] | None = None


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of a (B, C, H, W) batch (torchvision ``Resize`` on
    tensors). Opaque to torch.fx (``torch.fx.wrap``), so FX quantization keeps it in float:
    the antialiased kernel has no quantized version."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


torch.fx.wrap("resize_bilinear")


class InputContract(nn.Module):
    """``model`` behind the conversion from [0, 1] RGB that ``contract`` declares."""

    def __init__(self, model: nn.Module, contract: Contract) -> None:
        super().__init__()
        self.model = model
        self.grayscale = contract.grayscale
        self.size = contract.size
        self.normalizes = contract.mean is not None
        mean = contract.mean if contract.mean is not None else (0.0,)
        std = contract.std if contract.std is not None else (1.0,)
        self.register_buffer("mean", _channels(mean), persistent=False)
        self.register_buffer("std", _channels(std), persistent=False)
        self.register_buffer("luma", _channels(LUMA), persistent=False)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A (B, 3, H, W) batch in [0, 1] → the input the inner model expects."""
        if self.grayscale:
            x = (x * self.luma).sum(dim=1, keepdim=True)
        if self.size is not None:
            x = resize_bilinear(x, self.size)
        if self.normalizes:
            x = (x - self.mean) / self.std
        return x

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """A classifier's (B, 3, H, W) batch, or a list of CHW images of different sizes
        that ``size`` makes equal."""
        if isinstance(x, list | tuple):
            return self.model(torch.stack([self.prepare(image[None])[0] for image in x]))
        return self.model(self.prepare(x))

    def extra_repr(self) -> str:
        parts = [f"grayscale={self.grayscale}", f"size={self.size}"]
        if self.normalizes:
            parts.append(f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}")
        return ", ".join(parts)


class DetectorInputContract(InputContract):
    """``InputContract`` for a detector: each image of the list input is converted on its
    own (sizes may differ); targets (training mode) pass through unchanged."""

    def forward(  # type: ignore[override]
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> Any:
        prepared = [self.prepare(image[None])[0] for image in images]
        return self.model(prepared) if targets is None else self.model(prepared, targets)


def wrap(model: nn.Module, contract: Contract, task: str) -> InputContract:
    """``model`` behind ``contract``: a ``DetectorInputContract`` for ``task`` detection."""
    if task == "detection":
        return DetectorInputContract(model, contract)
    return InputContract(model, contract)


def _channels(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def inner_model(model: nn.Module) -> nn.Module:
    """The user's model inside an ``InputContract`` (``model`` itself otherwise): where
    user and pretrained weights (``model.checkpoint``) are loaded."""
    return model.model if isinstance(model, InputContract) else model


def accepts_image_lists(model: nn.Module) -> bool:
    """Whether a classifier ``model`` resizes images itself (``model.input.size``), so a
    list of differently sized images is a valid input."""
    return isinstance(model, InputContract) and model.size is not None


# -- batching and task checks on the first batch ------------------------------------------

MIXED_SIZES_HINT = "add data.transform: {resize: 224, center_crop: 224} or model.input.size"
CLASSIFIER_HINT = "set model.task: classification"


def stack_images(
    model: nn.Module, arrays: Sequence[np.ndarray], paths: Sequence[Path | None]
) -> torch.Tensor | list[torch.Tensor]:
    """uint8 HWC images → a float (B, 3, H, W) batch in [0, 1]; a list of CHW images
    when their sizes differ and ``model`` resizes itself (``model.input.size``).

    Differing sizes otherwise are a ``ModelInputError`` naming the first odd file.
    """
    shapes = [a.shape[:2] for a in arrays]
    odd = next((i for i, shape in enumerate(shapes) if shape != shapes[0]), None)
    if odd is None:
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))
        return batch.permute(0, 3, 1, 2).float().div_(255.0)
    if accepts_image_lists(model):
        return [
            torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0
            for a in arrays
        ]
    (h0, w0), (h1, w1) = shapes[0], shapes[odd]
    raise ModelInputError(
        f"images have sizes {h0}×{w0} and {h1}×{w1} and cannot form one batch",
        file=paths[odd],
        field="data.transform",
        hint=MIXED_SIZES_HINT,
    )


def is_logits(outputs: Any, n_images: int) -> bool:
    """Whether ``outputs`` is a classifier's (B, K) tensor for a batch of ``n_images``."""
    return isinstance(outputs, torch.Tensor) and outputs.ndim == 2 and len(outputs) == n_images


def classifier_error(outputs: torch.Tensor) -> ModelOutputError:
    """The one-line error for a classifier declared a detector."""
    b, k = outputs.shape
    return ModelOutputError(
        f"model returned a ({b}, {k}) tensor: it is a classifier, not a detector",
        field="model.task",
        hint=CLASSIFIER_HINT,
    )


def first_detector_outputs(
    model: nn.Module, images: list[torch.Tensor], call: Callable[[Any], Any]
) -> Any:
    """``call(images)`` on a detector's first batch; a classifier (it fails on a list,
    or returns logits) is reported as ``classifier_error``, other failures unchanged."""
    try:
        outputs = call(images)
    except (TypeError, AttributeError, ValueError):
        same = all(im.shape == images[0].shape for im in images)
        try:
            logits = model(torch.stack(images)) if same else None
        except Exception:
            logits = None
        if is_logits(logits, len(images)):
            raise classifier_error(logits) from None
        raise
    if is_logits(outputs, len(images)):
        raise classifier_error(outputs)
    return outputs

"""``data.transform``: resize and center-crop the decoded uint8 image (torchvision semantics).

Applied right after decoding, so corruptions, the model and every metric see the
transformed image (as ImageNet-C corrupts 224×224 center crops). ``resize: N`` scales
the shorter side to N (the longer to ``int(N * long / short)``, PIL bilinear, which is
what ``torchvision.transforms.Resize(N)`` does on a PIL image); ``center_crop: N`` cuts
the central N×N (zero-padded where the image is smaller, as torchvision pads).
The transform is part of the data fingerprint (``ImageTransform.describe``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImageTransform:
    """``resize`` (shorter side, pixels) then ``center_crop`` (square side); either may be None."""

    resize: int | None = None
    center_crop: int | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The transformed copy of a uint8 H×W×3 image."""
        if self.resize is not None:
            image = resize_shorter(image, self.resize)
        if self.center_crop is not None:
            image = center_crop(image, self.center_crop)
        return np.ascontiguousarray(image)

    def describe(self) -> str:
        """Canonical text for fingerprints, e.g. ``resize=256,center_crop=224``."""
        return f"resize={self.resize},center_crop={self.center_crop}"


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
    """Scale so that the shorter side is ``size`` (torchvision ``Resize(size)``)."""
    h, w = image.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_h, new_w) == (h, w):
        return image
    resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size``×``size`` pixels (torchvision ``CenterCrop(size)``)."""
    h, w = image.shape[:2]
    if h < size or w < size:
        pad_h, pad_w = max(size - h, 0), max(size - w, 0)
        pads = ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0))
        image = np.pad(image, pads[: image.ndim])
        h, w = image.shape[:2]
    top = round((h - size) / 2.0)
    left = round((w - size) / 2.0)
    return image[top : top + size, left : left + size]

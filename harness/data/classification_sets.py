"""Image classification data in COCO form: one annotation per image gives its class.

Classification sets reuse the COCO reader, so attribute splits, sidecar files, limits
and fingerprints work exactly as for detection. Class indices are 0..K-1 in the order
of ascending category id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.data.decoded import DecodedImages
from robustness_harness.data.transform import ImageTransform
from robustness_harness.errors import DataError


class ClassificationData:
    """Images with one class label each, over a ``CocoDetectionData`` (immutable views).

    ``transform`` (``data.transform``) resizes/crops each decoded image; it is part of
    the fingerprint.
    """

    task = "classification"

    def __init__(self, coco: CocoDetectionData, transform: ImageTransform | None = None) -> None:
        self.coco = coco
        self.transform = transform
        self.image_ids = coco.image_ids
        self.categories = coco.categories
        self.class_names = coco.category_names
        self._labels = {i: self._label_of_image(i) for i in self.image_ids}

    def keep_decoded_in(self, memory: DecodedImages) -> None:
        """Decode into ``memory`` from now on (see ``CocoDetectionData.keep_decoded_in``)."""
        self.coco.keep_decoded_in(memory)

    @classmethod
    def load(cls, images_dir: str | Path, annotations: str | Path) -> ClassificationData:
        """Read a COCO json whose images each have exactly one annotation."""
        return cls(CocoDetectionData.load(images_dir, annotations))

    def _label_of_image(self, image_id: int) -> int:
        anns = self.coco.annotations(image_id)
        cats = {int(a["category_id"]) for a in anns}
        if len(cats) != 1:
            info = self.coco.image_info(image_id)
            raise DataError(
                f"image {image_id} ('{info.get('file_name')}') has "
                f"{'no annotation' if not cats else f'{len(cats)} different categories'}; "
                "a classification set needs exactly one category per image",
                file=self.coco.annotations_file,
                field="annotations",
                hint="give every image one annotation whose category_id is its class",
            )
        return self.coco.label_of(cats.pop()) - 1

    # -- labels -----------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def label(self, image_id: int) -> int:
        """The class index (0..K-1) of an image."""
        return self._labels[int(image_id)]

    def labels(self, image_ids: Iterable[int] | None = None) -> np.ndarray:
        """Class indices of ``image_ids`` (default: all images, in order) as int64."""
        ids = self.image_ids if image_ids is None else image_ids
        return np.array([self._labels[int(i)] for i in ids], dtype=np.int64)

    def class_counts(self) -> np.ndarray:
        """Number of images per class index."""
        return np.bincount(self.labels(), minlength=self.num_classes)

    # -- images and views -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        return (
            f"ClassificationData({self.coco.annotations_file.name}: {len(self)} images, "
            f"{self.num_classes} classes)"
        )

    def load_image(self, image_id: int) -> np.ndarray:
        """The image as uint8 HWC RGB (after ``transform``)."""
        image = self.coco.load_image(image_id)
        return image if self.transform is None else self.transform(image)

    def image_path(self, image_id: int) -> Path:
        """Where the image file of ``image_id`` is."""
        return self.coco.image_path(image_id)

    def with_transform(self, transform: ImageTransform | None) -> ClassificationData:
        """The same images, decoded through ``transform`` (None: as stored)."""
        return self if transform == self.transform else self._wrap(self.coco, transform)

    def _wrap(
        self, coco: CocoDetectionData, transform: ImageTransform | None = None
    ) -> ClassificationData:
        return ClassificationData(coco, transform if transform is not None else self.transform)

    def attribute(self, image_id: int, key: str, default: Any = None) -> Any:
        return self.coco.attribute(image_id, key, default)

    def select(
        self, attributes: Mapping[str, Any], *, field: str = "split", file: Any = None
    ) -> ClassificationData:
        """The images whose attributes match (see ``CocoDetectionData.select``)."""
        return self._wrap(self.coco.select(attributes, field=field, file=file))

    def subset(self, image_ids: Iterable[int]) -> ClassificationData:
        return self._wrap(self.coco.subset(image_ids))

    def limit(self, n: int | None) -> ClassificationData:
        limited = self.coco.limit(n)
        return self if limited is self.coco else self._wrap(limited)

    @property
    def fingerprint(self) -> str:
        """The COCO fingerprint, combined with the transform's description when set."""
        if self.transform is None:
            return self.coco.fingerprint
        text = f"{self.coco.fingerprint}\ntransform {self.transform.describe()}"
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def annotations_file(self) -> Path:
        return self.coco.annotations_file

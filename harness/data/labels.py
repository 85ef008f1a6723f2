"""How a detector's integer labels name a dataset's categories (``model.labels``).

``index``: label ``i`` (1..K) is the i-th category in ascending category-id order and 0
is the background, as torchvision detectors trained on these data emit them.
``category_id``: labels are the dataset's COCO category ids themselves (torchvision's
COCO-pretrained detectors emit ids 1..90 with gaps). Predictions and training targets
use the same space, so a model is trained on the labels it is scored on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

LabelKind = Literal["index", "category_id"]
LABEL_KINDS: tuple[str, ...] = get_args(LabelKind)
NO_CATEGORY = -1
"""What ``LabelSpace.categories`` gives a label that names no category of the dataset."""


@dataclass(frozen=True)
class LabelSpace:
    """The label ↔ category-id mapping of one dataset under one ``model.labels`` kind."""

    kind: LabelKind
    category_ids: tuple[int, ...]
    """The dataset's category ids, ascending."""

    @classmethod
    def of(cls, kind: str, category_ids: Iterable[int]) -> LabelSpace:
        """The label space ``kind`` over ``category_ids`` (sorted here)."""
        if kind not in LABEL_KINDS:
            raise ValueError(f"unknown label kind {kind!r}; use one of {', '.join(LABEL_KINDS)}")
        return cls(kind, tuple(sorted(int(c) for c in category_ids)))  # type: ignore[arg-type]

    @property
    def num_classes(self) -> int:
        """Outputs a torchvision-style head needs (background included): K + 1 for
        ``index``, the largest category id + 1 for ``category_id``."""
        if self.kind == "index":
            return len(self.category_ids) + 1
        return max(self.category_ids) + 1

    @property
    def valid_labels(self) -> tuple[int, ...]:
        """The labels that name a category: 1..K, or the category ids."""
        if self.kind == "index":
            return tuple(range(1, len(self.category_ids) + 1))
        return self.category_ids

    def label_of(self, category_id: int) -> int:
        """The label of a category id of the dataset (``KeyError`` for other ids)."""
        if self.kind == "category_id":
            if int(category_id) not in self.category_ids:
                raise KeyError(category_id)
            return int(category_id)
        return self.category_ids.index(int(category_id)) + 1

    def impossible(self, labels: np.ndarray) -> np.ndarray:
        """Where a label cannot come from a model of this space: negative, or above K
        for ``index`` (an id the dataset lacks is possible for ``category_id``)."""
        labels = np.asarray(labels, np.int64)
        if self.kind == "index":
            return (labels < 0) | (labels > len(self.category_ids))
        return labels < 0

    def categories(self, labels: np.ndarray) -> np.ndarray:
        """Category ids (int64) of ``labels``; ``NO_CATEGORY`` where a label names none
        (the background label 0, or an id the dataset lacks)."""
        labels = np.asarray(labels, np.int64)
        ids = np.asarray(self.category_ids, np.int64)
        if self.kind == "category_id":
            return np.where(np.isin(labels, ids), labels, NO_CATEGORY)
        inside = (labels >= 1) & (labels <= len(ids))
        return np.where(inside, ids[np.clip(labels - 1, 0, len(ids) - 1)], NO_CATEGORY)

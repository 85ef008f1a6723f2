"""What COCO evaluation keeps between calls, owned by the data it evaluates on.

Evaluating the same predictions on the same ground truth happens many times in a run
(per-class reductions, the summary metrics of one check, bootstrap pools). A
``CocoMemo`` keeps the normalised ground truth, the engines' ``COCO`` indexes, whole
evaluations and per-image pools, each bounded and least-recently-used first out, keyed
by content fingerprints. It lives in the dataset's ``derived`` dict
(``CocoDetectionData.derived``, shared by its views), so it goes with the data the
session owns; a call without one computes afresh.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class Lru(Generic[V]):
    """At most ``size`` values by key, the least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value under ``key``, made (and kept) on first use."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


class CocoMemo:
    """The COCO evaluation values of one dataset (and its views and subsets)."""

    def __init__(self) -> None:
        self.ground_truth: Lru[dict[str, Any]] = Lru(8)
        """Normalised ground-truth dicts by gt fingerprint."""
        self.indexes: Lru[Any] = Lru(4)
        """A fast engine's ``COCO`` index by (engine, gt fingerprint)."""
        self.evaluations: Lru[Any] = Lru(8)
        """``CocoEvalResult`` by (engine, gt, predictions, image ids)."""
        self.pools: Lru[Any] = Lru(4)
        """Per-image ``CocoPool`` by (gt, predictions, image ids)."""


def coco_memo(targets: object) -> CocoMemo | None:
    """The memo kept in ``targets.derived`` (created on first use); None for targets
    without a ``derived`` dict (any object with ``coco_gt()`` and ``image_ids`` works)."""
    derived = getattr(targets, "derived", None)
    if not isinstance(derived, dict):
        return None
    if "coco" not in derived:  # not setdefault: it would build a memo on every call
        derived["coco"] = CocoMemo()
    memo = derived["coco"]
    return memo if isinstance(memo, CocoMemo) else None

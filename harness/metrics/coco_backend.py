"""COCO bbox evaluation engines: pycocotools (the reference) and a faster bit-exact one.

Every backend offers pycocotools' interface (``COCO``, ``loadRes``, ``COCOeval`` with
``evaluate``/``accumulate``/``summarize``, ``stats``, ``eval["precision"]``). The default
is ``ultrafast-pycocotools``, adopted because a hypothesis property test
(``tests/metrics/test_coco_backend.py``) finds its ``stats`` and precision arrays equal to
pycocotools' bit for bit on random inputs. ``HARNESS_COCO_BACKEND=pycocotools`` (or
``coco_evaluate(..., backend="pycocotools")``) selects the reference.

Fast backends take the detections as one ``(N, 7)`` float64 array (``loadRes`` of an
array, no per-detection dicts) and reuse the ground-truth ``COCO`` object per ground-truth
fingerprint; the pycocotools path is unchanged (dict results, a fresh ``COCO`` per call).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from robustness_harness.errors import HarnessError
from robustness_harness.inference.predictions import DetectionPredictions
from robustness_harness.metrics.coco_memo import CocoMemo

ENV_VAR = "HARNESS_COCO_BACKEND"
REFERENCE = "pycocotools"
DEFAULT = "ultrafast"

# name -> (module of COCO, module of COCOeval, COCOeval class name, pip package)
_MODULES: dict[str, tuple[str, str, str, str]] = {
    "pycocotools": ("pycocotools.coco", "pycocotools.cocoeval", "COCOeval", "pycocotools"),
    "ultrafast": (
        "ultrafast_pycocotools",
        "ultrafast_pycocotools",
        "COCOeval",
        "ultrafast-pycocotools",
    ),
    "hotcoco": ("hotcoco", "hotcoco", "COCOeval", "hotcoco"),
    "faster-coco-eval": (
        "faster_coco_eval",
        "faster_coco_eval",
        "COCOeval_faster",
        "faster-coco-eval",
    ),
}
BACKEND_NAMES = tuple(_MODULES)


@dataclass(frozen=True)
class CocoBackend:
    """One evaluation engine: its ``COCO`` and ``COCOeval`` classes."""

    name: str
    coco_cls: Any
    cocoeval_cls: Any

    @property
    def is_reference(self) -> bool:
        return self.name == REFERENCE

    def ground_truth(
        self, dataset: dict[str, Any], fingerprint: str, memo: CocoMemo | None = None
    ) -> Any:
        """A ``COCO`` of the (normalised) ``dataset``; fast backends reuse it per
        fingerprint in ``memo``, the reference (pycocotools) builds it on every call."""
        if memo is None or self.is_reference:
            return self._index(dataset)
        return memo.indexes.get_or_make((self.name, fingerprint), lambda: self._index(dataset))

    def _index(self, dataset: dict[str, Any]) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = self.coco_cls()
            coco_gt.dataset = dataset
            coco_gt.createIndex()
        return coco_gt

    def evaluate(
        self, coco_gt: Any, coco_dt: Any, image_ids: tuple[int, ...] | None
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """``COCOeval(gt, dt, "bbox")`` evaluate/accumulate/summarize, silenced:
        ``(stats (12,), precision (T, R, K, A, M), category ids)``."""
        with contextlib.redirect_stdout(io.StringIO()):
            ev = self.cocoeval_cls(coco_gt, coco_dt, "bbox")
            if image_ids is not None:
                ev.params.imgIds = list(image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = np.asarray(ev.stats, dtype=np.float64)
        precision = np.asarray(ev.eval["precision"])
        return stats, precision, [int(c) for c in ev.params.catIds]


def results_array(preds: DetectionPredictions) -> np.ndarray:
    """``(N, 7)`` float64 rows ``[image_id, x, y, w, h, score, category_id]``, the array
    form of ``preds.to_coco_results()`` (same order, same float64 values)."""
    ids = preds.image_ids
    dets = [preds.by_image[i] for i in ids]
    counts = [len(d.scores) for d in dets]
    if not sum(counts):
        return np.zeros((0, 7), np.float64)
    boxes = np.concatenate([np.asarray(d.boxes).reshape(-1, 4) for d in dets]).astype(np.float64)
    out = np.empty((len(boxes), 7), np.float64)
    out[:, 0] = np.repeat(np.asarray(ids, np.float64), counts)
    out[:, 1:3] = boxes[:, :2]
    out[:, 3:5] = boxes[:, 2:] - boxes[:, :2]
    out[:, 5] = np.concatenate([np.asarray(d.scores) for d in dets]).astype(np.float64)
    out[:, 6] = np.concatenate([np.asarray(d.category_ids) for d in dets]).astype(np.float64)
    return out


def backend_name(name: str | None = None) -> str:
    """``name``, else ``$HARNESS_COCO_BACKEND``, else the default; checked."""
    chosen = (name or os.environ.get(ENV_VAR) or DEFAULT).strip()
    if chosen not in _MODULES:
        from robustness_harness.registry import did_you_mean

        raise HarnessError(
            f"unknown COCO evaluation backend '{chosen}'",
            field=ENV_VAR,
            hint=f"{did_you_mean(chosen, list(_MODULES))}use one of: {', '.join(_MODULES)}",
        )
    return chosen


def get_backend(name: str | None = None) -> CocoBackend:
    """The backend ``name`` (see :func:`backend_name`); a missing package is an error."""
    return _load(backend_name(name))


@cache
def _load(name: str) -> CocoBackend:
    coco_mod, eval_mod, eval_cls, package = _MODULES[name]
    try:
        coco_cls = importlib.import_module(coco_mod).COCO
        cocoeval_cls = getattr(importlib.import_module(eval_mod), eval_cls)
    except ImportError as exc:
        raise HarnessError(
            f"COCO evaluation backend '{name}' is not installed ({exc})",
            field=ENV_VAR,
            hint=f"pip install {package}, or set {ENV_VAR}={REFERENCE}",
        ) from None
    return CocoBackend(name, coco_cls, cocoeval_cls)

"""COCO AP/AR on resampled image multisets without re-running ``COCOeval``.

``COCOeval.evaluate()`` matches detections to ground truth per (image, category, area
range); ``accumulate()`` then pools those per-image results. A bootstrap resample only
changes which images are pooled and how often, so ``CocoPool`` keeps the per-image
results of one ``evaluate()`` and re-pools them per resample with numpy, exactly as
``accumulate()`` does on a dataset in which every image appears as often as it was drawn
(copies adjacent, images in ascending id order): same concatenation, same stable sort
by score, same cumulative sums, precision envelope and recall thresholds. Tests prove it
bit-exact against pycocotools (identity resample and an explicitly duplicated dataset).

``accumulate_many`` evaluates a batch of resamples at once. Without score ties inside
one image, the pooled order of a multiset is the full set's order with each detection
repeated. A precision at a recall threshold is the largest precision among the points
whose recall reaches it, so points inside a run of detections that are all true (or all
false) positives at every IoU threshold never set it: a true run's end has at least
their recall and precision, a false run's start point has their recall and more
precision. Such runs are therefore pooled as one step weighted by how many of their
detections each resample holds, which gives pycocotools' numbers exactly. Categories
with score ties inside an image fall back to pooling each resample.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse
from pycocotools.cocoeval import COCOeval

from robustness_harness.inference.predictions import DetectionPredictions
from robustness_harness.metrics.base import Resampled, Resampler
from robustness_harness.metrics.coco_format import (
    CocoEvalResult,
    bbox_eval,
    canonical_gt_json,
    gt_fingerprint,
    normalize_gt,
)
from robustness_harness.metrics.coco_memo import CocoMemo, coco_memo

_EPS = np.spacing(1)


@dataclass(frozen=True)
class _Cell:
    """The per-image results of one (category, area range), images in pool order.

    Detections of image ``i`` are ``starts[i]:starts[i] + lengths[i]`` of ``scores``
    (D,), ``matched`` and ``ignored`` (T, D), in ``evaluateImg`` order (score
    descending, at most maxDets[-1]); ``present[i]`` is False where ``evaluateImg``
    returned None; ``npig[i]`` counts the image's non-ignored ground truth.
    """

    starts: np.ndarray
    lengths: np.ndarray
    present: np.ndarray
    npig: np.ndarray
    scores: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray


class CocoPool:
    """``COCOeval.evaluate()`` results kept per image, re-accumulated per resample."""

    def __init__(self, ev: COCOeval, category_names: Sequence[str] | None = None) -> None:
        p = ev.params
        if not ev.evalImgs:
            raise ValueError("run COCOeval.evaluate() before building a CocoPool")
        self.params = p
        self.image_ids = [int(i) for i in p.imgIds]
        self.category_ids = [int(c) for c in p.catIds]
        self.category_names = list(category_names or map(str, self.category_ids))
        n_img, n_area = len(self.image_ids), len(p.areaRng)
        self._cells = {
            (k, a): _cell(ev.evalImgs, (k * n_area + a) * n_img, n_img, len(p.iouThrs))
            for k in range(len(self.category_ids))
            for a in range(n_area)
        }
        self._orders: dict[tuple[int, int, int], _Order | None] = {}

    def accumulate(
        self,
        counts: np.ndarray,
        *,
        areas: Sequence[int] | None = None,
        max_dets: Sequence[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``precision`` (T, R, K, A, M) and ``recall`` (T, K, A, M) as ``accumulate()``
        computes them on the multiset with ``counts[i]`` copies of ``image_ids[i]``.

        ``areas``/``max_dets`` (indices into the params' lists, default all) limit the
        work; entries left out stay -1, like absent categories.
        """
        p = self.params
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != (len(self.image_ids),) or (counts < 0).any():
            raise ValueError(f"counts must be ({len(self.image_ids)},) non-negative integers")
        shape = (len(p.iouThrs), len(p.recThrs), len(self.category_ids))
        precision = -np.ones((*shape, len(p.areaRng), len(p.maxDets)))
        recall = -np.ones((shape[0], shape[2], len(p.areaRng), len(p.maxDets)))
        for (k, a), cell in self._cells.items():
            if areas is not None and a not in areas:
                continue
            for m, max_det in enumerate(p.maxDets):
                if max_dets is None or m in max_dets:
                    out = _accumulate_cell(cell, counts, max_det, p.recThrs)
                    if out is not None:
                        precision[:, :, k, a, m], recall[:, k, a, m] = out
        return precision, recall

    def accumulate_many(
        self, counts: np.ndarray, *, area: int = 0, max_det: int = -1
    ) -> tuple[np.ndarray, np.ndarray]:
        """``accumulate`` for a batch of multisets ``counts`` (B, n) at one area range and
        maxDets index: ``precision`` (B, T, R, K) and ``recall`` (B, T, K)."""
        p = self.params
        counts = np.asarray(counts, dtype=np.int64)
        if counts.ndim != 2 or counts.shape[1] != len(self.image_ids) or (counts < 0).any():
            raise ValueError(f"counts must be (B, {len(self.image_ids)}) non-negative integers")
        n_b, n_t, n_k = len(counts), len(p.iouThrs), len(self.category_ids)
        precision = -np.ones((n_b, n_t, len(p.recThrs), n_k))
        recall = -np.ones((n_b, n_t, n_k))
        max_det_value = p.maxDets[max_det]
        for k in range(n_k):
            cell = self._cells[(k, area)]
            order = self._order(k, area, max_det_value)
            for b, row in enumerate(counts) if order is None else []:  # ties: pool each
                out = _accumulate_cell(cell, row, max_det_value, p.recThrs)
                if out is not None:
                    precision[b, :, :, k], recall[b, :, k] = out
            if order is not None:
                _accumulate_weighted(cell, order, counts, p.recThrs, precision, recall, k)
        return precision, recall

    def _order(self, k: int, area: int, max_det: int) -> _Order | None:
        """The full set's pooled order of one category (memoized); None when two
        detections of one image share a score."""
        key = (k, area, max_det)
        if key not in self._orders:
            self._orders[key] = _pooled_order(self._cells[(k, area)], max_det)
        return self._orders[key]


@dataclass(frozen=True)
class _Order:
    """A cell's detections in ``accumulate()`` order on the full set, in runs of equal
    true / false positive flags at every IoU threshold: ``members`` (n images, G runs)
    counts each image's detections per run; ``tps``/``fps`` (T, G) are a run's flags."""

    members: scipy.sparse.csc_matrix
    tps: np.ndarray
    fps: np.ndarray


def _pooled_order(cell: _Cell, max_det: int) -> _Order | None:
    image = np.repeat(np.arange(len(cell.lengths)), cell.lengths)
    rank = np.arange(len(image)) - np.repeat(cell.starts, cell.lengths)
    keep = np.flatnonzero(rank < max_det)
    idx = keep[np.argsort(-cell.scores[keep], kind="mergesort")]
    if ((np.diff(cell.scores[idx]) == 0) & (np.diff(image[idx]) == 0)).any():
        return None
    dtm, dt_ig = cell.matched[:, idx], cell.ignored[:, idx]
    tps, fps = dtm & ~dt_ig, ~dtm & ~dt_ig
    flags = np.concatenate([tps, fps]).T  # (D, 2T)
    new_run = np.ones(len(idx), bool)
    new_run[1:] = (flags[1:] != flags[:-1]).any(axis=1)
    run = np.cumsum(new_run) - 1
    members = scipy.sparse.csc_matrix(
        (np.ones(len(idx)), (image[idx], run)), shape=(len(cell.lengths), int(new_run.sum()))
    )
    return _Order(members, tps[:, new_run], fps[:, new_run])


_CHUNK = 4_000_000
"""Elements (B × T × D) per step of ``_accumulate_weighted``."""


def _accumulate_weighted(
    cell: _Cell,
    order: _Order,
    counts: np.ndarray,
    rec_thrs: np.ndarray,
    precision: np.ndarray,
    recall: np.ndarray,
    k: int,
) -> None:
    """Fill ``precision[:, :, :, k]`` and ``recall[:, :, k]`` for every multiset."""
    n_t, n_d = order.tps.shape
    step = max(1, _CHUNK // max(1, n_t * n_d))
    for lo in range(0, len(counts), step):
        rows = counts[lo : lo + step]
        npig = rows @ cell.npig
        valid = ((rows[:, cell.present] > 0).any(axis=1)) & (npig > 0)
        if not valid.any():
            continue
        rows, npig, where = rows[valid], npig[valid], lo + np.flatnonzero(valid)
        if n_d == 0:
            recall[where, :, k] = 0.0
            precision[where, :, :, k] = 0.0
            continue
        weights = np.rint(order.members.T @ rows.T).T.astype(np.int64)[:, None, :]
        tp_int = np.cumsum(weights * order.tps, axis=2)
        tp_sum = tp_int.astype(dtype=float)
        fp_sum = np.cumsum(weights * order.fps, axis=2).astype(dtype=float)
        pr = tp_sum / (fp_sum + tp_sum + _EPS)
        envelope = np.maximum.accumulate(pr[..., ::-1], axis=2)[..., ::-1]
        recall[where, :, k] = tp_sum[..., -1] / npig[:, None]
        first = _first_reaching(tp_int, npig, rec_thrs)
        ok = first < n_d
        picked = np.take_along_axis(envelope, np.minimum(first, n_d - 1), axis=2)
        precision[where, :, :, k] = np.where(ok, picked, 0.0)


def _first_reaching(tp_int: np.ndarray, npig: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
    """``searchsorted(tp / npig, rec_thrs, side="left")`` per (b, t) row, computed on the
    integer true-positive counts so it is exact: the recall ``tp / npig`` first reaches a
    threshold at the smallest count ``c`` with ``c / npig`` (the same float) >= it."""
    n_b, n_t, n_d = tp_int.shape
    levels, inverse = np.unique(npig, return_inverse=True)
    per_level = [np.searchsorted(np.arange(n + 1) / n, rec_thrs, side="left") for n in levels]
    need = np.stack(per_level)[inverse]
    span = int(tp_int.max(initial=0)) + int(need.max(initial=0)) + 2
    offsets = (np.arange(n_b * n_t) * span).reshape(n_b, n_t, 1)
    flat = (tp_int + offsets).ravel()
    queries = need[:, None, :] + offsets
    found = np.searchsorted(flat, queries.ravel(), side="left").reshape(n_b, n_t, -1)
    return found - (np.arange(n_b * n_t) * n_d).reshape(n_b, n_t, 1)


def _cell(eval_imgs: list[Any], offset: int, n_img: int, n_iou: int) -> _Cell:
    evals = eval_imgs[offset : offset + n_img]
    lengths = np.array([0 if e is None else len(e["dtScores"]) for e in evals], np.int64)
    present = np.array([e is not None for e in evals], bool)
    npig = np.array([0 if e is None else int(np.count_nonzero(e["gtIgnore"] == 0)) for e in evals])
    kept = [e for e in evals if e is not None]
    empty = np.zeros((n_iou, 0))
    return _Cell(
        starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        lengths=lengths,
        present=present,
        npig=npig.astype(np.int64),
        scores=np.concatenate([np.asarray(e["dtScores"], np.float64) for e in kept] or [[]]),
        matched=np.concatenate([e["dtMatches"] for e in kept] or [empty], axis=1) != 0,
        ignored=np.concatenate([e["dtIgnore"] for e in kept] or [empty], axis=1) != 0,
    )


def _accumulate_cell(
    cell: _Cell, counts: np.ndarray, max_det: int, rec_thrs: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """One (category, area, maxDets) of ``accumulate()`` on the multiset ``counts``;
    None where pycocotools leaves -1 (no image or no non-ignored ground truth)."""
    chosen = np.flatnonzero((counts > 0) & cell.present)
    if chosen.size == 0:
        return None
    npig = int(counts[chosen] @ cell.npig[chosen])
    if npig == 0:
        return None
    copies = counts[chosen]
    starts = np.repeat(cell.starts[chosen], copies)
    lengths = np.repeat(np.minimum(cell.lengths[chosen], max_det), copies)
    # concatenate each drawn image's block once per copy, in image order
    first = np.cumsum(lengths) - lengths
    idx = np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))
    idx = idx[np.argsort(-cell.scores[idx], kind="mergesort")]
    dtm, dt_ig = cell.matched[:, idx], cell.ignored[:, idx]
    tp_sum = np.cumsum(dtm & ~dt_ig, axis=1).astype(dtype=float)
    fp_sum = np.cumsum(~dtm & ~dt_ig, axis=1).astype(dtype=float)
    nd = tp_sum.shape[1]
    rc = tp_sum / npig
    pr = tp_sum / (fp_sum + tp_sum + _EPS)
    recall = rc[:, -1] if nd else np.zeros(len(rc))
    precision = np.zeros((len(rc), len(rec_thrs)))
    if nd:
        envelope = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
        for t in range(len(rc)):
            inds = np.searchsorted(rc[t], rec_thrs, side="left")
            ok = inds < nd
            precision[t, ok] = envelope[t, inds[ok]]
    return precision, recall


def summarize(
    precision: np.ndarray,
    recall: np.ndarray,
    params: Any,
    *,
    ap: bool = True,
    iou: float | None = None,
    area: str = "all",
    max_dets: int = 100,
) -> float:
    """One ``COCOeval.summarize()`` statistic (``_summarize``), -1 when undefined."""
    aind = [i for i, lbl in enumerate(params.areaRngLbl) if lbl == area]
    mind = [i for i, m in enumerate(params.maxDets) if m == max_dets]
    s = precision if ap else recall
    if iou is not None:
        s = s[np.where(iou == params.iouThrs)[0]]
    return _mean_defined(s[:, :, :, aind, mind] if ap else s[:, :, aind, mind])


def _mean_defined(s: np.ndarray) -> float:
    """Mean of the entries > -1 (in C order, as ``_summarize``), or -1 if none."""
    return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))


def evaluate_pool(
    gt: dict[str, Any],
    preds: DetectionPredictions,
    image_ids: Sequence[int],
    memo: CocoMemo | None = None,
) -> CocoPool:
    """``COCOeval.evaluate()`` of ``preds`` on ``image_ids`` (validated and normalised as
    ``coco_evaluate`` does), kept as a ``CocoPool``; with a ``memo``, kept there."""
    gt_fp, canonical = gt_fingerprint(gt)
    img_key = tuple(sorted({int(i) for i in image_ids}))

    def evaluate() -> CocoPool:
        dataset = normalize_gt(json.loads(canonical or canonical_gt_json(gt)))
        ev = bbox_eval(dataset, preds, img_key)
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
        coco_gt = ev.cocoGt
        return CocoPool(ev, [str(coco_gt.cats[c].get("name", c)) for c in ev.params.catIds])

    if memo is None:
        return evaluate()
    return memo.pools.get_or_make((gt_fp, preds.fingerprint, img_key), evaluate)


def _pool_for(preds: DetectionPredictions, targets: Any) -> tuple[CocoPool, np.ndarray]:
    """The pool of ``targets``' images and the column order mapping data order → pool."""
    ids = [int(i) for i in targets.image_ids]
    pool = evaluate_pool(targets.coco_gt(), preds.subset(ids), ids, coco_memo(targets))
    position = {i: j for j, i in enumerate(ids)}
    return pool, np.array([position[i] for i in pool.image_ids], np.int64)


def summary_resampler(
    *, ap: bool = True, iou: float | None = None, area: str = "all", max_dets: int = 100
) -> Resampler:
    """A ``Resampler`` of one summary statistic (e.g. mAP: stats[0]); NaN where
    pycocotools reports -1."""

    def prepare(preds: DetectionPredictions, targets: Any) -> Resampled:
        pool, order = _pool_for(preds, targets)
        p = pool.params
        a, m = p.areaRngLbl.index(area), list(p.maxDets).index(max_dets)
        ious = slice(None) if iou is None else np.where(iou == p.iouThrs)[0]

        def values(counts: np.ndarray) -> np.ndarray:
            prec, rec = pool.accumulate_many(np.asarray(counts)[:, order], area=a, max_det=m)
            out = np.array(
                [_mean_defined((prec if ap else rec)[b][ious]) for b in range(len(prec))]
            )
            return np.where(out == -1, np.nan, out)

        return values

    return prepare


def per_class_resampler(*, iou_50: bool = False) -> Resampler:
    """A ``Resampler`` of AP@[.5:.95] (or AP@0.5) per class name (NaN without ground
    truth in the resample), read as ``CocoEvalResult`` reads it."""

    def prepare(preds: DetectionPredictions, targets: Any) -> Resampled:
        pool, order = _pool_for(preds, targets)
        area = pool.params.areaRngLbl.index("all")

        def values(counts: np.ndarray) -> dict[str, np.ndarray]:
            prec, _ = pool.accumulate_many(np.asarray(counts)[:, order], area=area, max_det=-1)
            out: list[dict[str, float]] = []
            for b in range(len(prec)):
                full = prec[b][..., None, None]  # (T, R, K, A=1, M=1)
                res = CocoEvalResult(np.empty(0), full, pool.category_ids, pool.category_names)
                out.append(res.ap50_per_class() if iou_50 else res.ap_per_class())
            return {k: np.array([o[k] for o in out], np.float64) for k in out[0]}

        return values

    return prepare

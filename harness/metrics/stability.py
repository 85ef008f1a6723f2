"""Stability of a compressed model against its baseline (after Schwaiger et al.).

Beyond aggregate accuracy, compression can change *which* inputs a model gets right,
how confident it is, and what it looks at: prediction flips, the worst per-class
accuracy drop, the shift in confidence and the change of saliency maps.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from robustness_harness.errors import DataError
from robustness_harness.inference.predictions import ClassPredictions, DetectionPredictions
from robustness_harness.metrics.base import RECOMPUTE, MetricResult, Probability
from robustness_harness.metrics.classification import ClassTargets, aligned, per_class_accuracies
from robustness_harness.metrics.context import ModelContext
from robustness_harness.metrics.detection import CocoTargets, coco_match
from robustness_harness.registry import register_metric

TWIN_NOTE = "saliency of the candidate through its fake-quant twin"


# -- flips ------------------------------------------------------------------------------


@register_metric("flip_rate", task="any", inputs="pair", higher_is_better=False, resample=RECOMPUTE)
def flip_rate(
    preds: ClassPredictions | DetectionPredictions,
    baseline_preds: ClassPredictions | DetectionPredictions,
    data: Any,
    *,
    iou: Probability = 0.5,
    score_threshold: Probability = 0.3,
) -> MetricResult:
    """Fraction of images (classifiers) or objects (detectors) candidate and baseline disagree on.

    Classifiers: images whose top-1 class differs. Detectors: among non-crowd ground
    truth objects, those found by exactly one of the two models; found = matched by COCO's
    greedy matching at IoU ≥ ``iou`` to a detection of its category with score ≥
    ``score_threshold``. NaN when there is nothing to compare.
    """
    if isinstance(preds, ClassPredictions) and isinstance(baseline_preds, ClassPredictions):
        return _class_flips(preds, baseline_preds, data)
    if isinstance(preds, DetectionPredictions) and isinstance(baseline_preds, DetectionPredictions):
        return _object_flips(preds, baseline_preds, data, iou=iou, score_threshold=score_threshold)
    raise DataError(
        f"candidate ({type(preds).__name__}) and baseline ({type(baseline_preds).__name__}) "
        "predictions are of different kinds",
        field="predictions",
        hint="compare variants of one model family",
    )


def _class_flips(
    preds: ClassPredictions, baseline_preds: ClassPredictions, data: ClassTargets
) -> MetricResult:
    flips = aligned(preds, data).top1 != aligned(baseline_preds, data).top1
    n = int(flips.size)
    return MetricResult(float(flips.mean()) if n else math.nan, {"n": n, "flips": int(flips.sum())})


def found_objects(
    preds: DetectionPredictions, data: CocoTargets, *, iou: float, score_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Non-crowd ground-truth annotation ids (ascending) and whether each is found."""
    ids = list(data.image_ids)
    m = coco_match(data.coco_gt(), preds.subset(ids), iou=iou, image_ids=ids)
    return m.gt_ids, m.gt_match_scores >= score_threshold


def _object_flips(
    preds: DetectionPredictions,
    baseline_preds: DetectionPredictions,
    data: CocoTargets,
    *,
    iou: float,
    score_threshold: float,
) -> MetricResult:
    gt_ids, cand = found_objects(preds, data, iou=iou, score_threshold=score_threshold)
    base_ids, base = found_objects(baseline_preds, data, iou=iou, score_threshold=score_threshold)
    assert np.array_equal(gt_ids, base_ids)  # one ground truth, one matching order
    n = int(gt_ids.size)
    details = {
        "n": n,
        "lost": int((base & ~cand).sum()),  # found by the baseline only
        "gained": int((cand & ~base).sum()),  # found by the candidate only
    }
    value = (details["lost"] + details["gained"]) / n if n else math.nan
    return MetricResult(value, details)


# -- per-class accuracy and confidence ----------------------------------------------------

_CLASS_PAIR: dict[str, Any] = {
    "task": "classification",
    "inputs": "pair",
    "higher_is_better": False,
    "resample": RECOMPUTE,
}
"""How the per-class pair metrics below are registered."""


@register_metric("class_accuracy_delta", **_CLASS_PAIR)
def class_accuracy_delta(
    preds: ClassPredictions, baseline_preds: ClassPredictions, data: ClassTargets
) -> MetricResult:
    """Largest per-class accuracy drop: max over classes of baseline − candidate accuracy.

    Classes without images are skipped (NaN when no class has images). Details name the
    class (``class``) with both accuracies and hold every class's drop (``deltas``).
    """
    cand = per_class_accuracies(preds, data)
    base = per_class_accuracies(baseline_preds, data)
    deltas = {k: base[k] - cand[k] for k in cand if not math.isnan(cand[k])}
    if not deltas:
        return MetricResult(math.nan, {"deltas": {}}, "no class has images")
    worst = max(deltas, key=lambda k: deltas[k])  # first of equal drops, in class order
    details = {"class": worst, "baseline": base[worst], "candidate": cand[worst], "deltas": deltas}
    note = f"class '{worst}': {base[worst]:.3f} -> {cand[worst]:.3f}"
    return MetricResult(deltas[worst], details, note)


@register_metric("confidence_shift", **_CLASS_PAIR)
def confidence_shift(
    preds: ClassPredictions, baseline_preds: ClassPredictions, data: ClassTargets
) -> MetricResult:
    """Mean over images of |p_candidate(y_b) − p_baseline(y_b)|, y_b the baseline's top-1.

    p are softmax probabilities (float64) of the logits; NaN without images.
    """
    cand, base = aligned(preds, data), aligned(baseline_preds, data)
    rows = np.arange(len(base))
    y_b = base.top1
    shift = np.abs(cand.probs[rows, y_b] - base.probs[rows, y_b])
    if not shift.size:
        return MetricResult(math.nan, {"n": 0})
    return MetricResult(float(shift.mean()), {"n": int(shift.size), "max": float(shift.max())})


# -- saliency ---------------------------------------------------------------------------


@register_metric(
    "saliency_change",
    task="classification",
    inputs="model",
    higher_is_better=False,
    cacheable=True,
    compares=True,
)
def saliency_change(ctx: ModelContext) -> MetricResult:
    """How far the candidate's saliency maps moved from the baseline's (captum Saliency).

    For each image of ``ctx.data`` (cap it with the check's ``images:``): the map is
    |∂ logit_y / ∂ x| (y the true class, x the [0, 1] input), max over channels, divided
    by its sum so that its pixels sum to 1 (an all-zero map becomes uniform). The value
    is the mean over images of ½ Σ_pixels |map_candidate − map_baseline|: 0 for identical
    maps, 1 for disjoint ones, independent of image size. Details: ``mean_abs`` (mean
    absolute per-pixel difference) and ``n``. A quantized candidate is differentiated
    through its fake-quant twin. Deterministic (cuDNN deterministic algorithms while computing).
    """
    if ctx.baseline_model is None:
        raise DataError(
            "saliency_change needs the baseline model but none is available",
            field="baseline",
            hint="run the check within a suite that names a baseline variant",
        )
    ids = list(ctx.data.image_ids)
    if not ids:
        raise DataError("the evaluation data has no images", field="images")
    candidate = ctx.twin if ctx.twin is not None else ctx.model
    cand_maps = saliency_maps(candidate, ctx, ids)
    base_maps = saliency_maps(ctx.baseline_model(), ctx, ids)
    pairs = list(zip(cand_maps, base_maps, strict=True))
    distance = [0.5 * float(np.abs(a - b).sum()) for a, b in pairs]
    mean_abs = [float(np.abs(a - b).mean()) for a, b in pairs]
    details = {"n": len(ids), "mean_abs": float(np.mean(mean_abs))}
    note = TWIN_NOTE if ctx.twin is not None else ""
    return MetricResult(float(np.mean(distance)), details, note)


def saliency_maps(model: nn.Module, ctx: ModelContext, ids: list[int]) -> list[np.ndarray]:
    """Normalised saliency maps (H, W) float64 of ``model`` for images ``ids``, in order."""
    labels = np.asarray(ctx.data.labels(ids), dtype=np.int64)
    out: list[np.ndarray] = []
    for start in range(0, len(ids), max(1, ctx.batch_size)):
        chunk = ids[start : start + max(1, ctx.batch_size)]
        batch = ctx.images(chunk)
        targets = labels[start : start + len(chunk)]
        inputs = [batch] if isinstance(batch, torch.Tensor) else [t[None] for t in batch]
        k = 0
        for x in inputs:
            y = targets[k : k + len(x)]
            k += len(x)
            out.extend(_normalise(m) for m in _raw_saliency(model, x, y))
    return out


def _raw_saliency(model: nn.Module, x: torch.Tensor, y: np.ndarray) -> np.ndarray:
    """|∂ logit_y / ∂ x| max over channels, (N, H, W) float64, model in eval mode."""
    from captum.attr import Saliency  # ~1 s to import (matplotlib): only when used

    device = next((p.device for p in model.parameters()), x.device)
    target = torch.as_tensor(y, dtype=torch.int64, device=device)
    inputs = x.detach().to(device).requires_grad_(True)
    with _eval_mode(model), _deterministic(), torch.enable_grad():
        grads = Saliency(model).attribute(inputs, target=target, abs=True)
    return grads.detach().amax(dim=1).to(torch.float64).cpu().numpy()


def _normalise(saliency: np.ndarray) -> np.ndarray:
    """Divide by the sum; an all-zero map becomes uniform (NaN stays NaN)."""
    total = float(saliency.sum())
    if total == 0.0:
        return np.full_like(saliency, 1.0 / saliency.size)
    return saliency / total


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` inside, every module's ``training`` flag restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """cuDNN deterministic, no benchmark autotuning; previous flags restored after."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved

"""Measure one check: the metric of a variant and of its baseline, then decide.

A metric's ``inputs`` kind says what it needs: cached predictions, a candidate and
baseline pair, the model itself, or a grid of clean and corrupted scores. With
``corruptions:`` a prediction metric is averaged over every (corruption, severity).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from harness.cache import cache_key
from harness.checks import CheckOutcome, CheckSkipped, decide_check
from harness.errors import HarnessError
from harness.metrics import METRICS, MetricInfo, MetricResult
from harness.metrics.context import CorruptionGrid, ModelContext
from harness.predictions import Predictions
from harness.spec import CheckSpec, Suite, Thresholds
from harness.spec.loader import canonical_json
from harness.versions import stamps

if TYPE_CHECKING:
    from harness.session import HarnessSession

Job = tuple[str, int]
DEFAULT_SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Measurement:
    """A metric value of one variant on one check's data, with report details."""

    value: float | dict[str, float]
    n_images: int
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def check_data(session: HarnessSession, suite: Suite, check_name: str) -> Any:
    """The check's evaluation images: the suite's data, its ``split``, its ``images`` cap."""
    check = suite.spec.checks[check_name]
    data = session.dataset(suite)
    if check.split:
        data = data.select(check.split, field=f"checks.{check_name}.split", file=suite.path)
    return data.limit(check.images) if check.images else data


def jobs_of(check: CheckSpec) -> list[Job]:
    """The (corruption, severity) pairs of a check, corruptions first."""
    severities = check.severities or list(DEFAULT_SEVERITIES)
    return [(c, s) for c in check.corruptions or [] for s in severities]


def measure(session: HarnessSession, suite: Suite, variant: str, check_name: str) -> Measurement:
    """``variant``'s value of the check's metric (not yet compared with anything)."""
    check = suite.spec.checks[check_name]
    info = METRICS.get(check.metric, file=str(suite.path), field=f"checks.{check_name}.metric")
    data = check_data(session, suite, check_name)
    if info.inputs == "model":
        return _model_metric(session, suite, variant, check, info, data)
    if info.inputs == "corruption_grid":
        grid = corruption_grid(session, suite, variant, data, jobs_of(check))
        return _wrap(info(grid, **check.params), len(data), _grid_note(check))
    if check.corruptions:
        return _mean_over_corruptions(session, suite, variant, check, info, data)
    preds = session.predictions(suite, variant).subset(data.image_ids)
    if info.inputs == "pair":
        base = session.predictions(suite, suite.spec.baseline).subset(data.image_ids)
        return _wrap(info(preds, base, data, **check.params), len(data))
    return _wrap(info(preds, data, **check.params), len(data))


def run_check(session: HarnessSession, suite: Suite, variant: str, check_name: str) -> CheckOutcome:
    """Evaluate one gate: candidate and baseline values, reduction and decision."""
    spec = suite.spec
    check = spec.checks[check_name]
    info = METRICS.get(check.metric)
    cand = measure(session, suite, variant, check_name)
    base = None
    if variant != spec.baseline and not info.compares_with_baseline:
        base = measure(session, suite, spec.baseline, check_name)
    value, baseline_value, decision, worst = decide_check(
        check=check, info=info, candidate=cand.value, baseline=None if base is None else base.value
    )
    return CheckOutcome(
        suite=spec.suite,
        variant=variant,
        check=check_name,
        metric=check.metric,
        value=value,
        baseline_value=baseline_value,
        decision=decision,
        thresholds=Thresholds.from_check(check),
        baseline_variant=spec.baseline,
        n_images=cand.n_images,
        seed=session.seed(suite, variant),
        worst_class=worst,
        per_class=cand.value if isinstance(cand.value, dict) else None,
        baseline_per_class=base.value
        if base is not None and isinstance(base.value, dict)
        else None,
        extra={
            "reduce": check.reduce or "",
            "note": cand.note,
            "details": cand.details,
            "baseline_details": base.details if base is not None else {},
        },
    )


def _per_class(m: Measurement | None) -> dict[str, float] | None:
    return m.value if m is not None and isinstance(m.value, dict) else None


def _wrap(result: MetricResult, n_images: int, note: str = "") -> Measurement:
    notes = "; ".join(n for n in (result.note, note) if n)
    return Measurement(result.value, n_images, dict(result.details), notes)


def _grid_note(check: CheckSpec) -> str:
    n_c = len(check.corruptions or [])
    n_s = len(check.severities or DEFAULT_SEVERITIES)
    return f"{n_c} corruption{'s' * (n_c != 1)} × {n_s} severit{'ies' if n_s != 1 else 'y'}"


# -- corruptions ----------------------------------------------------------------------
def corrupted_predictions(
    session: HarnessSession, suite: Suite, variant: str, data: Any, jobs: Sequence[Job]
) -> dict[Job, Predictions]:
    """``variant``'s predictions under each (corruption, severity), built where missing.

    Corrupted images come from the cache (generated in parallel on first use), one
    corruption at a time so memory stays bounded.
    """
    from harness.corruptions import corrupted_sets

    keys = {job: session.prediction_key(suite, variant, data, job) for job in jobs}
    missing = [job for job in jobs if session.cached_predictions(keys[job]) is None]
    if missing:
        start = time.perf_counter()
        session.progress(
            f"corruptions: predicting {suite.spec.suite}/{variant} under {len(missing)} "
            f"(corruption, severity) pairs on {len(data)} images"
        )
        for name in dict.fromkeys(c for c, _ in missing):
            batch = [job for job in missing if job[0] == name]
            sets = corrupted_sets(
                session.cache, data, batch, seed=session.eval_seed(suite), progress=None
            )
            for job in batch:
                session.predictions(suite, variant, data=data, corruption=job, images=sets[job])
        session.progress(
            f"corruptions: {suite.spec.suite}/{variant} done in {time.perf_counter() - start:.1f}s"
        )
    return {job: session.predictions(suite, variant, data=data, corruption=job) for job in jobs}


def corruption_grid(
    session: HarnessSession, suite: Suite, variant: str, data: Any, jobs: Sequence[Job]
) -> CorruptionGrid:
    """Clean and corrupted main scores (mAP or accuracy) of ``variant``; a non-baseline
    variant's grid carries the baseline's grid for corruption errors."""
    from harness.corruptions import family_of

    memo_key = ("grid", suite.path, variant, data.fingerprint, tuple(jobs))
    if memo_key in session.memo:
        return session.memo[memo_key]
    primary = METRICS.get(session.task(suite).primary_metric)
    values = _corrupted_scores(session, suite, variant, data, jobs, primary)
    clean_preds = session.predictions(suite, variant).subset(data.image_ids)
    clean = float(primary(clean_preds, data).value)  # type: ignore[arg-type]
    baseline = None
    if variant != suite.spec.baseline:
        baseline = corruption_grid(session, suite, suite.spec.baseline, data, jobs)
    grid = CorruptionGrid(
        clean=clean,
        values=values,
        families={c: family_of(c) for c, _ in jobs},
        baseline=baseline,
        extra={"metric": primary.name},
    )
    session.memo[memo_key] = grid
    return grid


def _corrupted_scores(
    session: HarnessSession,
    suite: Suite,
    variant: str,
    data: Any,
    jobs: Sequence[Job],
    primary: MetricInfo,
) -> dict[Job, float]:
    """The main score under each (corruption, severity), cached as one value entry so a
    warm run neither loads the predictions nor re-runs the evaluations."""
    pred_keys = [session.prediction_key(suite, variant, data, job) for job in jobs]
    key = cache_key("grid", primary.name, pred_keys)

    def build(_tmp: Any) -> dict[str, Any]:
        preds = corrupted_predictions(session, suite, variant, data, jobs)
        scores = [float(primary(preds[job], data).value) for job in jobs]  # type: ignore[arg-type]
        return {"jobs": [list(job) for job in jobs], "scores": scores}

    entry, _ = session.cache.get_or_build("value", key, build, rebuild=session.take_rebuild(key))
    return {job: float(v) for job, v in zip(jobs, entry.meta["scores"], strict=True)}


def _mean_over_corruptions(
    session: HarnessSession,
    suite: Suite,
    variant: str,
    check: CheckSpec,
    info: MetricInfo,
    data: Any,
) -> Measurement:
    jobs = jobs_of(check)
    cand = corrupted_predictions(session, suite, variant, data, jobs)
    base = None
    if info.inputs == "pair":
        base = corrupted_predictions(session, suite, suite.spec.baseline, data, jobs)
    values: dict[Job, float | dict[str, float]] = {}
    for job in jobs:
        args = (cand[job],) if base is None else (cand[job], base[job])
        values[job] = info(*args, data, **check.params).value
    table: dict[str, dict[str, Any]] = {}
    for (c, s), v in values.items():
        table.setdefault(c, {})[str(s)] = v
    return Measurement(
        _mean_values(list(values.values())), len(data), {"per_corruption": table}, _grid_note(check)
    )


def _mean_values(values: list[float | dict[str, float]]) -> float | dict[str, float]:
    """Mean of scalars, or per-key mean (NaN ignored) of per-class mappings."""
    if values and isinstance(values[0], dict):
        keys = list(values[0])
        return {k: _nanmean([v[k] for v in values]) for k in keys}  # type: ignore[index]
    return _nanmean(values)  # type: ignore[arg-type]


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


# -- model metrics --------------------------------------------------------------------
def check_device(session: HarnessSession, check: CheckSpec) -> torch.device:
    """The device a check runs on; ``CheckSkipped`` when it asks for an absent GPU."""
    if check.device is None:
        return session.device
    device = torch.device(check.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CheckSkipped(f"device '{check.device}' requested but no CUDA GPU is present")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CheckSkipped(
                f"device '{check.device}' requested but only "
                f"{torch.cuda.device_count()} GPU(s) are visible"
            )
    return device


def _model_metric(
    session: HarnessSession,
    suite: Suite,
    variant: str,
    check: CheckSpec,
    info: MetricInfo,
    data: Any,
) -> Measurement:
    device = check_device(session, check)
    loaded = session.loaded(suite, variant)
    key = cache_key(
        "value",
        info.name,
        canonical_json(check.params),
        loaded.key,
        data.fingerprint,
        device.type,
        session.eval_seed(suite),
        stamps(),
    )

    def compute() -> MetricResult:
        start = time.perf_counter()
        model = loaded.model.to(device)
        ctx = ModelContext(
            model=model,
            data=data,
            device=device,
            task=session.task(suite).name,
            seed=session.eval_seed(suite),
            checkpoint_dir=loaded.meta.get("dir"),
            baseline_model=lambda: session.model(suite, suite.spec.baseline).to(device),
            progress=session.progress,
        )
        try:
            result = info(ctx, **check.params)
        finally:
            loaded.model.to(session.device)
        session.progress(
            f"measured {info.name} of {suite.spec.suite}/{variant} on {len(data)} images "
            f"in {time.perf_counter() - start:.1f}s"
        )
        return result

    if not info.cacheable:
        return _wrap(compute(), len(data))

    def build(_tmp: Any) -> dict[str, Any]:
        result = compute()
        return {"value": result.value, "details": result.details, "note": result.note}

    entry, _ = session.cache.get_or_build("value", key, build, rebuild=session.take_rebuild(key))
    meta = entry.meta
    if "value" not in meta:
        raise HarnessError(
            f"cached value {key[:12]} has no 'value'",
            field="cache",
            hint="run `harness cache verify`, or pass --harness-rebuild",
        )
    return _wrap(
        MetricResult(meta["value"], meta.get("details", {}), meta.get("note", "")), len(data)
    )

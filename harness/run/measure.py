"""Measure one gate: the metric of a variant and of its baseline, and its statistics.

``run_check`` is one gate's path: measure (here, through the session) → decide (the
pure ``decide.decide_gate``) → record (a regenerated snapshot). A metric's ``inputs``
kind says what it needs: cached predictions, a candidate and baseline pair, the model
itself, or a grid of clean and corrupted scores. With ``corruptions:`` a prediction
metric is averaged over every (corruption, severity).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from robustness_harness.errors import CheckError, HarnessError
from robustness_harness.inference.predictions import Predictions
from robustness_harness.metrics import METRICS, MetricInfo, MetricResult
from robustness_harness.metrics.base import MetricInputs
from robustness_harness.metrics.context import CorruptionGrid, ModelContext
from robustness_harness.run.decide import (
    Gate,
    GateMeasurements,
    Measurement,
    Value,
    anova_groups,
    bootstrap_statistic,
    check_baseline,
    decide_gate,
    gate_statistics,
    per_run,
    uses_statistics,
)
from robustness_harness.run.outcome import CheckOutcome, CheckSkipped, GateStatistics
from robustness_harness.run.snapshots import load_snapshot, record_snapshot
from robustness_harness.run.variants import Variant, run_of
from robustness_harness.store.cache import cache_key
from robustness_harness.store.versions import stamps
from robustness_harness.suite import CheckSpec, Suite, Thresholds
from robustness_harness.suite.loader import canonical_json

if TYPE_CHECKING:
    from robustness_harness.run.session import HarnessSession
    from robustness_harness.stats import Anova, BootstrapResult

Job = tuple[str, int]
T = TypeVar("T")
DEFAULT_SEVERITIES = (1, 2, 3, 4, 5)


@dataclass
class MeasureMemory:
    """What the gates of one session share, owned by the session: one-way ANOVAs per
    (suite, check) and corruption grids per (suite, variant, data, jobs)."""

    anovas: dict[tuple[Path, str], Anova] = field(default_factory=dict)
    grids: dict[tuple[Path, Variant, str, tuple[Job, ...]], CorruptionGrid] = field(
        default_factory=dict
    )


def jobs_of(check: CheckSpec) -> list[Job]:
    """The (corruption, severity) pairs of a check, corruptions first."""
    severities = check.severities or list(DEFAULT_SEVERITIES)
    return [(c, s) for c in check.corruptions or [] for s in severities]


def measure(
    session: HarnessSession, suite: Suite, variant: Variant, check_name: str
) -> Measurement:
    """``variant``'s value of the check's metric (not yet compared with anything)."""
    check = suite.spec.checks[check_name]
    info = METRICS.get(check.metric, file=str(suite.path), field=f"checks.{check_name}.metric")
    data = session.check_data(suite, check_name)
    if info.inputs == "model":
        return _model_metric(session, suite, variant, check, info, data)
    if info.inputs == "corruption_grid":
        grid = corruption_grid(session, suite, variant, data, jobs_of(check))
        grid_inputs = MetricInputs(data=data, grid=grid)
        return _wrap(info(grid_inputs, **check.params), len(data), _grid_note(check))
    if check.corruptions:
        return _mean_over_corruptions(session, suite, variant, check, info, data)
    inputs = metric_inputs(session, suite, variant, info, data)
    return _wrap(info(inputs, **check.params), len(data))


def metric_inputs(
    session: HarnessSession, suite: Suite, variant: Variant, info: MetricInfo, data: Any
) -> MetricInputs:
    """A prediction metric's inputs: ``variant``'s predictions on ``data`` and, for a
    ``pair`` metric, the baseline's."""
    preds = session.predictions_on(suite, variant, data)
    base = None
    if info.inputs == "pair":
        base = session.predictions_on(suite, suite.spec.baseline, data)
    return MetricInputs(data=data, preds=preds, baseline_preds=base)


def located(fn: Callable[[HarnessSession, Suite, str, str], T]) -> Callable[..., T]:
    """``fn(session, suite, variant, check_name)`` with its errors located in the suite
    file: a ``CheckError`` under ``checks.<check_name>``, any other ``HarnessError``
    that names no file in the suite file."""

    @functools.wraps(fn)
    def run(session: HarnessSession, suite: Suite, variant: Variant, check_name: str) -> T:
        try:
            return fn(session, suite, variant, check_name)
        except HarnessError as err:
            if err.file is not None:
                raise
            prefix = f"checks.{check_name}" if isinstance(err, CheckError) else None
            raise err.with_context(file=suite.path, field_prefix=prefix) from err

    return run


@located
def run_check(
    session: HarnessSession, suite: Suite, variant: Variant, check_name: str
) -> CheckOutcome:
    """Evaluate one gate: candidate and baseline values (means over a variant's runs),
    statistics (``confidence``, ``runs_test``, ``anova``), the snapshot, then the
    decision (``decide_gate``); a regenerated snapshot records the decided value."""
    spec = suite.spec
    check = spec.checks[check_name]
    info = METRICS.get(check.metric)
    cand, base = measure_gate(session, suite, variant, check_name)
    measured = GateMeasurements(cand, base, seed=session.seed(suite, variant))
    # an unusable baseline fails before the statistics' cost (decide_gate checks it too)
    where = {"file": suite.path, "field_prefix": f"checks.{check_name}"}
    check_baseline(check, info, measured.baseline_value, baseline_name=spec.baseline, **where)
    stats = measure_statistics(session, suite, variant, check_name, cand, base)
    snapshot = load_snapshot(session, suite, variant, check_name)
    outcome = decide_gate(
        Gate(spec.suite, variant, check_name, spec.baseline, file=suite.path),
        check,
        info,
        dataclasses.replace(measured, statistics=stats),
        snapshot,
    )
    if snapshot is not None and snapshot.regen:
        record_snapshot(snapshot, suite, variant, check_name, outcome.value)
    return outcome


def measure_gate(
    session: HarnessSession, suite: Suite, variant: Variant, check_name: str
) -> tuple[list[Measurement], list[Measurement] | None]:
    """``(candidate runs, baseline runs)`` of a gate; no baseline runs for the baseline
    variant itself or a metric that compares by itself (unless measured together)."""
    spec = suite.spec
    check = spec.checks[check_name]
    info = METRICS.get(check.metric)
    base: list[Measurement] | None = None
    if pairs_with_baseline(suite, variant, check, info):
        cand, base = measure_paired_runs(session, suite, variant, check_name)
    else:
        cand = measure_runs(session, suite, variant, check_name)
    if base is None and variant != spec.baseline and not info.compares_with_baseline:
        base = measure_runs(session, suite, spec.baseline, check_name)
    return cand, base


# -- repeated runs and statistics -------------------------------------------------------
def measure_runs(
    session: HarnessSession, suite: Suite, variant: Variant, check_name: str
) -> list[Measurement]:
    """``measure`` of each run of ``variant`` (``runs: N``: seeds seed..seed+N-1)."""
    runs = suite.spec.variants[variant].runs
    return [measure(session, suite, run_of(variant, r), check_name) for r in range(runs)]


def pairs_with_baseline(suite: Suite, variant: Variant, check: CheckSpec, info: MetricInfo) -> bool:
    """Whether ``variant`` and the baseline are measured together (``info.paired``, e.g.
    latency in alternating rounds): a non-baseline variant, thresholds relative to it."""
    return (
        info.paired is not None
        and variant != suite.spec.baseline
        and Thresholds.from_check(check).needs_baseline
    )


def measure_paired_runs(
    session: HarnessSession, suite: Suite, variant: Variant, check_name: str
) -> tuple[list[Measurement], list[Measurement]]:
    """Each run of ``variant`` measured together with the baseline run of the same seed
    (run 0 when the baseline runs fewer times): ``(candidate, baseline)`` per run."""
    spec = suite.spec
    check = spec.checks[check_name]
    info = METRICS.get(check.metric)
    data = session.check_data(suite, check_name)
    cand: list[Measurement] = []
    base: list[Measurement] = []
    for r in range(spec.variants[variant].runs):
        base_run = r if r < spec.variants[spec.baseline].runs else 0
        pair = (run_of(variant, r), run_of(spec.baseline, base_run))
        c, b = _paired_model_metric(session, suite, pair, check, info, data)
        cand.append(c)
        base.append(b)
    return cand, base


def measure_statistics(
    session: HarnessSession,
    suite: Suite,
    variant: Variant,
    check_name: str,
    cand: list[Measurement],
    base: list[Measurement] | None,
) -> GateStatistics | None:
    """What a gate's statistics need that only measuring gives (a bootstrap's resampled
    values, the runs' seeds, the other variants' runs for an ANOVA), turned into
    statistics by ``decide.gate_statistics``; None when the check uses none."""
    check = suite.spec.checks[check_name]
    if not uses_statistics(check, len(cand)):
        return None
    info = METRICS.get(check.metric)
    runs = per_run(check, info, _values(cand), None if base is None else _values(base))
    boot = (
        _bootstrap(session, suite, variant, check_name, base is not None)
        if check.bootstrap
        else None
    )
    return gate_statistics(
        check,
        runs,
        seeds=[session.seed(suite, run_of(variant, r)) for r in range(len(cand))],
        bootstrap=boot,
        anova=_anova(session, suite, check_name) if check.anova else None,
    )


def _values(measurements: Sequence[Measurement]) -> list[Value]:
    return [m.value for m in measurements]


def _bootstrap(
    session: HarnessSession, suite: Suite, variant: Variant, check_name: str, with_baseline: bool
) -> BootstrapResult:
    """Paired bootstrap over the check's images of the gated quantities; candidate and
    baseline are means over their runs, recomputed on the same image multisets."""
    from robustness_harness.metrics.resample import resampled_values
    from robustness_harness.stats import DEFAULT_RESAMPLES, paired_bootstrap

    check = suite.spec.checks[check_name]
    info = METRICS.get(check.metric)
    task = session.task(suite).name
    data = session.check_data(suite, check_name)

    def run_values(name: str) -> list[Any]:
        runs = suite.spec.variants[name].runs
        inputs = [metric_inputs(session, suite, run_of(name, r), info, data) for r in range(runs)]
        return [resampled_values(info, task, one, check.params) for one in inputs]

    cand_fns = run_values(variant)
    base_fns = run_values(suite.spec.baseline) if with_baseline else []
    start = time.perf_counter()
    result = paired_bootstrap(
        bootstrap_statistic(check, info, cand_fns, base_fns),
        len(data),
        confidence=check.confidence,  # type: ignore[arg-type]
        resamples=check.resamples or DEFAULT_RESAMPLES,
        seed=session.eval_seed(suite),
    )
    session.progress(
        f"bootstrap: {suite.spec.suite}/{variant}::{check_name} {result.resamples} resamples "
        f"of {len(data)} images in {time.perf_counter() - start:.1f}s"
    )
    return result


def _anova(session: HarnessSession, suite: Suite, check_name: str) -> Anova:
    """One-way ANOVA of the check's per-run values across the variants it gates (and the
    baseline, when its own value is meaningful); memoized per suite and check."""
    from robustness_harness.stats import one_way_anova

    key = (suite.path, check_name)
    if key not in session.measured.anovas:
        spec = suite.spec
        check = spec.checks[check_name]
        base = _values(measure_runs(session, suite, spec.baseline, check_name))
        gated = {
            v: _values(measure_runs(session, suite, v, check_name))
            for v in spec.variants
            if v != spec.baseline and spec.gates(v, check_name)
        }
        groups = anova_groups(check, METRICS.get(check.metric), (spec.baseline, base), gated)
        session.measured.anovas[key] = one_way_anova(groups)
    return session.measured.anovas[key]


def _wrap(result: MetricResult, n_images: int, note: str = "") -> Measurement:
    notes = "; ".join(n for n in (result.note, note) if n)
    return Measurement(result.value, n_images, dict(result.details), notes)


def _grid_note(check: CheckSpec) -> str:
    n_c = len(check.corruptions or [])
    n_s = len(check.severities or DEFAULT_SEVERITIES)
    return f"{n_c} corruption{'s' * (n_c != 1)} × {n_s} severit{'ies' if n_s != 1 else 'y'}"


# -- corruptions ----------------------------------------------------------------------
def corrupted_predictions(
    session: HarnessSession, suite: Suite, variant: Variant, data: Any, jobs: Sequence[Job]
) -> dict[Job, Predictions]:
    """``variant``'s predictions under each (corruption, severity), built where missing.

    Corrupted images come from the cache (generated in parallel on first use), one
    corruption at a time so memory stays bounded.
    """
    from robustness_harness.perturb.corruptions import corrupted_sets

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
    session: HarnessSession, suite: Suite, variant: Variant, data: Any, jobs: Sequence[Job]
) -> CorruptionGrid:
    """Clean and corrupted main scores (mAP or accuracy) of ``variant``; a non-baseline
    variant's grid carries the baseline's grid for corruption errors."""
    from robustness_harness.perturb.corruptions import family_of

    memo_key = (suite.path, variant, data.fingerprint, tuple(jobs))
    if memo_key in session.measured.grids:
        return session.measured.grids[memo_key]
    primary = METRICS.get(session.task(suite).primary_metric)
    values = _corrupted_scores(session, suite, variant, data, jobs, primary)
    clean_preds = session.predictions_on(suite, variant, data)
    clean = float(primary(MetricInputs(data, clean_preds)).value)  # type: ignore[arg-type]
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
    session.measured.grids[memo_key] = grid
    return grid


def _corrupted_scores(
    session: HarnessSession,
    suite: Suite,
    variant: Variant,
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
        scores = [float(primary(MetricInputs(data, preds[job])).value) for job in jobs]  # type: ignore[arg-type]
        return {"jobs": [list(job) for job in jobs], "scores": scores}

    entry, _ = session.cache.get_or_build("value", key, build, rebuild=session.take_rebuild(key))
    return {job: float(v) for job, v in zip(jobs, entry.meta["scores"], strict=True)}


def _mean_over_corruptions(
    session: HarnessSession,
    suite: Suite,
    variant: Variant,
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
        inputs = MetricInputs(data, cand[job], None if base is None else base[job])
        values[job] = info(inputs, **check.params).value
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


def _quantized_on_cpu(device: torch.device, quantized: bool) -> tuple[torch.device, str]:
    """The device a model metric runs on and a note: a quantized model runs on the CPU
    (quantized kernels are CPU-only)."""
    if quantized and device.type != "cpu":
        return torch.device("cpu"), f"quantized model evaluated on CPU (not {device})"
    return device, ""


def _paired_model_metric(
    session: HarnessSession,
    suite: Suite,
    variants: tuple[str, str],
    check: CheckSpec,
    info: MetricInfo,
    data: Any,
) -> tuple[Measurement, Measurement]:
    """``info.paired`` of ``(candidate, baseline)`` variants, both models on one device
    (the CPU when either is quantized); never cached (it is a measurement of now)."""
    assert info.paired is not None
    cand_name, base_name = variants
    twins = [session.twin(suite, v) for v in variants]  # before loading: twins evict
    quantized = any(t is not None for t in twins)
    device, note = _quantized_on_cpu(check_device(session, check), quantized)
    loaded = session.loaded(suite, cand_name)
    base_model = session.model(suite, base_name)
    start = time.perf_counter()
    ctx = ModelContext(
        model=loaded.model.to(device),
        data=data,
        device=device,
        task=session.task(suite).name,
        seed=session.eval_seed(suite),
        checkpoint_dir=loaded.meta.get("dir"),
        baseline_model=lambda: base_model.to(device),
        twin=None if twins[0] is None else twins[0].to(device),
        progress=session.progress,
    )
    try:
        cand, base = info.measure_paired(MetricInputs(data=data, ctx=ctx), **check.params)
    finally:
        for model in (loaded.model, base_model, *(t for t in twins if t is not None)):
            model.to(session.device)
    session.progress(
        f"measured {info.name} of {suite.spec.suite}/{cand_name} with {base_name} on "
        f"{len(data)} images in {time.perf_counter() - start:.1f}s"
    )
    return _wrap(cand, len(data), note), _wrap(base, len(data), note)


def _model_metric(
    session: HarnessSession,
    suite: Suite,
    variant: Variant,
    check: CheckSpec,
    info: MetricInfo,
    data: Any,
) -> Measurement:
    device = check_device(session, check)
    twin = session.twin(suite, variant)  # before loaded(): loading the twin evicts
    loaded = session.loaded(suite, variant)
    device, note = _quantized_on_cpu(device, twin is not None)
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
            twin=None if twin is None else twin.to(device),
            progress=session.progress,
        )
        try:
            result = info(MetricInputs(data=data, ctx=ctx), **check.params)
        finally:
            loaded.model.to(session.device)
            if twin is not None:
                twin.to(session.device)
        session.progress(
            f"measured {info.name} of {suite.spec.suite}/{variant} on {len(data)} images "
            f"in {time.perf_counter() - start:.1f}s"
        )
        return result

    if not info.cacheable:
        return _wrap(compute(), len(data), note)

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
        MetricResult(meta["value"], meta.get("details", {}), meta.get("note", "")), len(data), note
    )

"""Run reports: ``results.json`` (every gate's numbers, decision and stamps) and a
self-contained ``report.html`` (``robustness_harness.report.html``).

Records are plain JSON values (NaN becomes null) so that they travel from xdist
workers to the controller inside pytest reports; ``write_report`` runs once, at the end.
``results.schema.json`` (next to this module) describes ``results.json``.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from robustness_harness.errors import HarnessError
from robustness_harness.report.counts import (
    PYTEST_CATEGORIES,
    STATUSES,
    describe_counts,
    pytest_counts,
)
from robustness_harness.report.html import render_html
from robustness_harness.run.outcome import CheckOutcome
from robustness_harness.run.snapshots import with_tolerance
from robustness_harness.store.cache import atomic_write_json, atomic_write_text, make_dirs
from robustness_harness.store.versions import git_commit, stamps

FORMAT = 1
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
__all__ = ["PYTEST_CATEGORIES", "STATUSES", "describe_counts", "pytest_counts"]


def jsonable(obj: Any) -> Any:
    """``obj`` as strict JSON values: NaN/inf → None, tuples → lists, numpy scalars →
    Python numbers, non-string keys → strings, anything else → ``str``."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return jsonable(obj.item())
    return str(obj)


def outcome_record(
    outcome: CheckOutcome,
    *,
    params: Mapping[str, Any],
    item_stamps: Mapping[str, str],
    primary_metric: str,
) -> dict[str, Any]:
    """Everything the report shows about one measured gate (status and duration are
    added by the caller that knows them). ``primary_metric`` is the task's main score
    (``map`` or ``accuracy``), the unit of corruption grids."""
    extra = outcome.extra
    snapshot = extra.get("snapshot") or {}
    record = {
        "suite": outcome.suite,
        "variant": outcome.variant,
        "check": outcome.check,
        "metric": outcome.metric,
        "label": outcome.label(),
        "params": dict(params),
        "primary_metric": primary_metric,
        "reduce": extra.get("reduce") or None,
        "value": outcome.value,
        "baseline_value": outcome.baseline_value,
        "baseline_variant": outcome.baseline_variant,
        "thresholds": dict(outcome.thresholds.set_items()),
        "threshold_text": with_tolerance(outcome.thresholds.describe(), snapshot),
        "passed": outcome.passed,
        "violations": list(outcome.decision.violations),
        "derived": dict(outcome.decision.derived),
        "message": outcome.message(),
        "ci": _ci(outcome),
        "statistics": outcome.statistics.properties() if outcome.statistics else None,
        "snapshot": snapshot or None,
        "n_images": outcome.n_images,
        "seed": outcome.seed,
        "worst_class": outcome.worst_class,
        "per_class": outcome.per_class,
        "baseline_per_class": outcome.baseline_per_class,
        "note": extra.get("note") or None,
        "details": extra.get("details", {}),
        "baseline_details": extra.get("baseline_details", {}),
        "properties": outcome.properties(),
        "stamps": dict(item_stamps),
    }
    return jsonable(record)


def gate_record(
    suite: str,
    variant: str,
    check: str,
    metric: str | None,
    *,
    status: str,
    message: str,
    phase: str,
) -> dict[str, Any]:
    """The record of a gate that produced no value: it errored (``status="error"``) or
    was skipped in ``phase`` (``setup``, ``call`` or ``teardown``); ``message`` is one line.
    ``metric`` is None only when unknown (a gate whose xdist worker crashed)."""
    record: dict[str, Any] = {
        "suite": suite,
        "variant": variant,
        "check": check,
        "metric": metric,
        "status": status,
        "phase": phase,
        "message": one_line(message),
        "value": None,
    }
    if status == "skipped":
        record["skip_reason"] = record["message"]
    return record


def skipped_record(suite: str, variant: str, check: str, metric: str, reason: str) -> dict:
    """The record of a gate that could not run here (e.g. a CUDA check without a GPU)."""
    return gate_record(
        suite, variant, check, metric, status="skipped", message=reason, phase="call"
    )


def collection_record(nodeid: str, message: str, *, status: str = "error") -> dict[str, Any]:
    """The record of a suite file that failed to load (or was skipped whole): it names
    the file (``nodeid``, also as ``suite``), with no variant, check or metric."""
    record: dict[str, Any] = {
        "nodeid": nodeid,
        "suite": nodeid,
        "variant": None,
        "check": None,
        "metric": None,
        "status": status,
        "phase": "collect",
        "message": one_line(message),
        "value": None,
    }
    if status == "skipped":
        record["skip_reason"] = record["message"]
    return record


def one_line(text: str) -> str:
    """``text`` on one line: runs of whitespace, newlines included, become one space."""
    return " ".join(str(text).split())


def error_message(exc: BaseException) -> str:
    """The one-line message of a gate that raised ``exc``: a ``HarnessError``'s own text,
    else ``ExcType: <first line of the exception's text>`` (never a traceback)."""
    if isinstance(exc, HarnessError):
        return one_line(str(exc))
    first = error_line(str(exc))
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def error_line(text: str) -> str:
    """The first non-blank line of ``text``, on one line (``""`` when all blank)."""
    return one_line(next((line for line in text.splitlines() if line.strip()), ""))


def _ci(outcome: CheckOutcome) -> dict[str, dict[str, float]] | None:
    """The confidence intervals of a check with ``confidence:``, per gated quantity
    (``value``, ``drop``, ...): ``{"drop": {"low", "high", "confidence"}}``."""
    stats = outcome.statistics
    if stats is None or not stats.intervals:
        return None
    return {
        quantity: {"low": ci.low, "high": ci.high, "confidence": ci.confidence}
        for quantity, ci in stats.intervals.items()
    }


def results_document(
    records: Sequence[Mapping[str, Any]],
    *,
    started: str,
    run_stamps: Mapping[str, str] | None = None,
    shard: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``results.json`` document: run stamps (this process's unless ``run_stamps``),
    the gates per status (``summary``), pytest's counts of the same run (``counts``), the
    records sorted by (suite, variant, check) and, for one job of a sharded run, its
    ``shard`` (``--harness-shard``)."""
    items = sorted((jsonable(r) for r in records), key=_order)
    statuses = {s: sum(r.get("status") == s for r in items) for s in STATUSES}
    doc = {
        "format": FORMAT,
        "started": started,
        "finished": _now(),
        "stamps": dict(run_stamps) if run_stamps else {**stamps(), "git_commit": git_commit()},
        "summary": {"total": len(items), **statuses},
        "counts": pytest_counts(items),
        "items": items,
    }
    if shard is not None:
        doc["shard"] = dict(shard)
    return doc


def _order(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """Sort key: (suite, variant, check); a suite file that failed to load has neither."""
    return (record["suite"], record.get("variant") or "", record.get("check") or "")


def write_report(
    out_dir: Path,
    records: Sequence[Mapping[str, Any]],
    *,
    started: str | None = None,
    run_stamps: Mapping[str, str] | None = None,
    shard: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``results.json`` and ``report.html`` into ``out_dir`` (created if needed,
    each file replaced atomically); returns their paths. ``run_stamps`` and ``shard`` as
    in ``results_document``."""
    out_dir = Path(out_dir)
    make_dirs(
        out_dir,
        HarnessError,
        "the report directory",
        file=out_dir,
        field="--harness-report",
        hint="pass a writable directory",
    )
    doc = results_document(records, started=started or _now(), run_stamps=run_stamps, shard=shard)
    results, page = out_dir / "results.json", out_dir / "report.html"
    atomic_write_json(results, doc)
    atomic_write_text(page, render_html(doc))
    return results, page


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")

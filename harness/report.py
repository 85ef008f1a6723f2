"""Run reports: ``results.json`` (every gate's numbers, decision and stamps) and a
self-contained ``report.html`` with the plots of ``robustness_harness.plots`` inlined as PNGs.

Records are plain JSON values (NaN becomes null) so that they travel from xdist
workers to the controller inside pytest reports; ``write_report`` runs once, at the end.
``results.schema.json`` (next to this module) describes ``results.json``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robustness_harness.baselines import with_tolerance
from robustness_harness.cache import atomic_write_json, atomic_write_text
from robustness_harness.checks import CheckOutcome
from robustness_harness.errors import HarnessError
from robustness_harness.versions import git_commit, stamps

FORMAT = 1
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
STATUSES = ("passed", "failed", "skipped")


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


def skipped_record(suite: str, variant: str, check: str, metric: str, reason: str) -> dict:
    """The record of a gate that could not run here (e.g. a CUDA check without a GPU)."""
    return {
        "suite": suite,
        "variant": variant,
        "check": check,
        "metric": metric,
        "status": "skipped",
        "skip_reason": reason,
        "value": None,
    }


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


def results_document(records: Sequence[Mapping[str, Any]], *, started: str) -> dict[str, Any]:
    """The ``results.json`` document: run stamps, counts and the records sorted by
    (suite, variant, check)."""
    items = sorted(
        (jsonable(r) for r in records), key=lambda r: (r["suite"], r["variant"], r["check"])
    )
    counts = {s: sum(r.get("status") == s for r in items) for s in STATUSES}
    return {
        "format": FORMAT,
        "started": started,
        "finished": _now(),
        "stamps": {**stamps(), "git_commit": git_commit()},
        "summary": {"total": len(items), **counts},
        "items": items,
    }


def write_report(
    out_dir: Path, records: Sequence[Mapping[str, Any]], *, started: str | None = None
) -> tuple[Path, Path]:
    """Write ``results.json`` and ``report.html`` into ``out_dir`` (created if needed,
    each file replaced atomically); returns their paths."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(
            f"cannot create the report directory: {exc.strerror or exc}",
            file=out_dir,
            field="--harness-report",
            hint="pass a writable directory",
        ) from None
    doc = results_document(records, started=started or _now())
    results, page = out_dir / "results.json", out_dir / "report.html"
    atomic_write_json(results, doc)
    atomic_write_text(page, render_html(doc))
    return results, page


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# -- HTML ---------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
table{border-collapse:collapse;font-size:13px;margin-bottom:20px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0} td.num{text-align:right;font-variant-numeric:tabular-nums}
.passed{background:#d9f2d9}.failed{background:#f8d0d0}.skipped{background:#eee}
figure{display:inline-block;margin:8px;vertical-align:top}
figcaption{font-size:12px;color:#555;max-width:640px} img{max-width:100%}
pre{margin:0;white-space:pre-wrap;font-size:12px}
"""

_COLUMNS = ("suite", "variant", "check", "value", "baseline", "snapshot", "thresholds", "CI")


def render_html(doc: Mapping[str, Any]) -> str:
    """A self-contained page: stamps, summary, the results table and every plot."""
    from robustness_harness.plots import all_figures

    items = doc["items"]
    s = doc["summary"]
    esc = html.escape
    stamp_text = ", ".join(f"{k} {v}" for k, v in doc["stamps"].items())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>robustness-harness report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>robustness-harness report</h1>",
        f"<p>{esc(doc['finished'])} · {esc(stamp_text)}</p>",
        f"<p><b>{s['total']}</b> gates: {s['passed']} passed, {s['failed']} failed, "
        f"{s['skipped']} skipped</p>",
        _table(items),
        "<h2>Plots</h2>",
    ]
    figures = all_figures(items)
    for title, png in figures:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<figure><img alt='{esc(title, quote=True)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{esc(title)}</figcaption></figure>"
        )
    if not figures:
        parts.append(
            "<p>No check produced plot data (per-class values, corruption grids, "
            "calibration bins or latency samples).</p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(items: Iterable[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{c}</th>" for c in (*_COLUMNS, "result", "time (s)", "message"))
    rows = [f"<table><tr>{head}</tr>"]
    for r in items:
        status = r.get("status", "")
        snap = r.get("snapshot") or {}
        ci = r.get("ci") or {}
        cells = [
            r["suite"],
            r["variant"],
            r["check"],
            _num(r.get("value")),
            _num(r.get("baseline_value")),
            "recorded" if snap.get("recorded") else _num(snap.get("value")),
            r.get("threshold_text", ""),
            "; ".join(f"{q} [{_num(i['low'])}, {_num(i['high'])}]" for q, i in ci.items()),
        ]
        tds = "".join(
            f"<td class='num'>{html.escape(c)}</td>"
            if 3 <= i <= 5
            else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(cells)
        )
        message = r.get("skip_reason") or ("" if status == "passed" else r.get("message", ""))
        rows.append(
            f"<tr>{tds}<td class='{status}'>{status.upper()}</td>"
            f"<td class='num'>{_num(r.get('duration_s'), 2)}</td>"
            f"<td><pre>{html.escape(message or '')}</pre></td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _num(x: Any, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)

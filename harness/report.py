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
STATUSES = ("passed", "failed", "error", "skipped")
"""A gate's ``status``: ``error`` when it could not be measured (an exception, a variant
that failed to build, a suite file that failed to load, an error in setup/teardown)."""
PYTEST_CATEGORIES = ("passed", "failed", "error", "skipped")
"""pytest's own counts (``error`` is its setup/teardown/collection errors); results.json's
``counts`` equal pytest's summary line."""


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


def pytest_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many tests pytest counts in each category (``passed``, ``failed``, ``error``,
    ``skipped``, ...) for ``records``: their ``outcomes``, one per pytest report that
    counted (a gate that passed and then errored in teardown counts twice, as pytest
    does). A record without ``outcomes`` counts once: an error in ``call`` as ``failed``
    (pytest's word for an exception in a test), other errors as ``error``."""
    counts = dict.fromkeys(PYTEST_CATEGORIES, 0)
    for record in records:
        for outcome in record.get("outcomes") or [_default_outcome(record)]:
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _default_outcome(record: Mapping[str, Any]) -> str:
    status = str(record.get("status"))
    if status == "error" and record.get("phase", "call") == "call":
        return "failed"
    return status


def describe_counts(counts: Mapping[str, int], *, zeros: bool = True) -> str:
    """``2 passed, 1 failed, 3 errors, 0 skipped`` (pytest's words); ``zeros=False``
    leaves out empty categories, as pytest's own summary line does."""
    parts = [
        f"{n} {'errors' if word == 'error' and n != 1 else word}"
        for word, n in counts.items()
        if n or zeros
    ]
    return ", ".join(parts) or "nothing"


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
    """The ``results.json`` document: run stamps, the gates per status (``summary``),
    pytest's counts of the same run (``counts``) and the records sorted by
    (suite, variant, check)."""
    items = sorted((jsonable(r) for r in records), key=_order)
    statuses = {s: sum(r.get("status") == s for r in items) for s in STATUSES}
    return {
        "format": FORMAT,
        "started": started,
        "finished": _now(),
        "stamps": {**stamps(), "git_commit": git_commit()},
        "summary": {"total": len(items), **statuses},
        "counts": pytest_counts(items),
        "items": items,
    }


def _order(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """Sort key: (suite, variant, check); a suite file that failed to load has neither."""
    return (record["suite"], record.get("variant") or "", record.get("check") or "")


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
.error{background:#f4a259;font-weight:bold}
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
        f"<p><b>{s['total']}</b> gates: {esc(describe_counts({k: s[k] for k in STATUSES}))}"
        f" (as pytest counts them: {esc(describe_counts(doc['counts'], zeros=False))})</p>",
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
            r.get("variant") or "",
            r.get("check") or "",
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
        message = "" if status == "passed" else r.get("message") or r.get("skip_reason", "")
        rows.append(
            f"<tr>{tds}<td class='{status}'>{status.upper()}</td>"
            f"<td class='num'>{_num(r.get('duration_s'), 2)}</td>"
            f"<td><pre>{html.escape(message or '')}</pre></td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _num(x: Any, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)

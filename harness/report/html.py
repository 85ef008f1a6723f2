"""``report.html``: one self-contained page with the run's stamps, summary, the gate table
and every plot of ``robustness_harness.report.plots`` inlined as PNGs."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping
from typing import Any

from robustness_harness.report.counts import STATUSES, describe_counts
from robustness_harness.report.plots import all_figures

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

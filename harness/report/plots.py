"""Report figures from result records, as PNG bytes (matplotlib's object API, which
renders with Agg and never touches pyplot's global state or a display).

Each ``*_figures`` function groups the records that measured the same thing (suite,
metric, parameters, data) and returns ``(title, png)`` pairs: per-class bars (baseline
vs variants), corruption × severity heatmaps, reliability diagrams and latency
distributions.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from robustness_harness.run.outcome import metric_label

Record = dict[str, Any]
Figures = list[tuple[str, bytes]]

_BASELINE_COLOR = "#7f7f7f"
_DPI = 96


def all_figures(records: Iterable[Record]) -> Figures:
    """Every figure the records support, in a fixed order."""
    rows = [r for r in records if r.get("status") != "skipped" and r.get("value") is not None]
    return [
        *per_class_figures(rows),
        *heatmap_figures(rows),
        *reliability_figures(rows),
        *latency_figures(rows),
    ]


def _groups(records: Iterable[Record], *fields: str) -> dict[str, list[Record]]:
    """Records keyed by the JSON of ``suite``, ``metric``, ``params``, data fingerprint
    and any extra ``fields``: the same measurement on different variants."""
    out: dict[str, list[Record]] = {}
    for r in records:
        ident = [r["suite"], r["metric"], r.get("params"), r.get("stamps", {}).get("data")]
        ident += [r.get(f) for f in fields]
        out.setdefault(json.dumps(ident, sort_keys=True, default=str), []).append(r)
    return out


def _series(group: list[Record], key: str, base_key: str) -> dict[str, Any]:
    """``{model: data}``: the baseline variant's (from ``base_key``) first, then each
    variant's ``key`` in record order."""
    series: dict[str, Any] = {}
    for r in group:
        if r.get(base_key):
            series.setdefault(f"{r['baseline_variant']} (baseline)", r[base_key])
    for r in group:
        if r.get(key):
            series.setdefault(r["variant"], r[key])
    return series


def _detail_series(
    records: Iterable[Record], key: str, keep: Callable[[Any], bool]
) -> Iterator[tuple[list[Record], dict[str, Any]]]:
    """Each ``_groups`` group of the records whose details hold a list ``key``, with
    ``{model: details[key]}`` (baseline first) of the models whose ``details[key]`` passes
    ``keep``."""
    rows = [r for r in records if isinstance(r.get("details", {}).get(key), list)]
    for group in _groups(rows).values():
        series = _series(group, "details", "baseline_details")
        yield group, {name: d[key] for name, d in series.items() if keep(d.get(key))}


def _checks(group: list[Record]) -> str:
    return ", ".join(dict.fromkeys(r["check"] for r in group))


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return buf.getvalue()


def _titled(fig: Figure, ax: Any, title: str) -> tuple[str, bytes]:
    """``(title, png)`` of ``fig`` after giving its one panel ``ax`` the title."""
    ax.set_title(title, fontsize=10)
    return title, _png(fig)


def _subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    fig = Figure(figsize=kwargs.pop("figsize", None), layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _series_colors(series: dict[str, Any]) -> list[Any]:
    """A colour per model of ``series``: grey for a ``(baseline)`` one (it comes first)."""
    cmap = colormaps["tab10"]
    n = len(series)
    if any(name.endswith("(baseline)") for name in series):
        return [_BASELINE_COLOR, *[cmap(i % 10) for i in range(n - 1)]]
    return [cmap(i % 10) for i in range(n)]


# -- per-class bars -------------------------------------------------------------------
def per_class_figures(records: Iterable[Record]) -> Figures:
    """Grouped bars of every class's value: the baseline next to each variant."""
    out: Figures = []
    for group in _groups((r for r in records if r.get("per_class")), "reduce").values():
        series = _series(group, "per_class", "baseline_per_class")
        classes = list(dict.fromkeys(c for values in series.values() for c in values))
        fig, ax = _subplots(figsize=(max(6.0, 0.9 * len(classes) + 2), 3.6))
        width = 0.8 / max(1, len(series))
        x = np.arange(len(classes))
        for i, ((name, values), color) in enumerate(
            zip(series.items(), _series_colors(series), strict=True)
        ):
            heights = [_nan(values.get(c)) for c in classes]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=name, color=color)
        ax.set_xticks(x, classes, rotation=30, ha="right")
        label = metric_label(group[0]["metric"])
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8, ncols=min(4, len(series)))
        out.append(_titled(fig, ax, f"{group[0]['suite']}: per-class {label} ({_checks(group)})"))
    return out


# -- corruption heatmaps --------------------------------------------------------------
def heatmap_figures(records: Iterable[Record]) -> Figures:
    """The main score under each corruption × severity, one panel per model."""
    out: Figures = []
    grids = [r for r in records if isinstance(r.get("details", {}).get("table"), dict)]
    for group in _grid_groups(grids).values():
        series: dict[str, dict[str, dict[str, float]]] = {}
        for r in group:
            base = r["details"].get("baseline_table")
            if base:
                series.setdefault(f"{r['baseline_variant']} (baseline)", base)
        for r in group:
            series.setdefault(r["variant"], r["details"]["table"])
        corruptions = list(next(iter(series.values())))
        severities = sorted(
            {s for table in series.values() for row in table.values() for s in row}, key=int
        )
        matrices = [
            np.array([[_nan(table.get(c, {}).get(s)) for s in severities] for c in corruptions])
            for table in series.values()
        ]
        vmax = max(1e-9, float(np.nanmax([np.nanmax(m) for m in matrices])))
        fig, axes = _subplots(
            1,
            len(series),
            figsize=(
                1.0 + len(series) * (0.55 * len(severities) + 2.4),
                0.32 * len(corruptions) + 1.6,
            ),
            squeeze=False,
        )
        image = None
        for ax, (name, matrix) in zip(axes[0], zip(series, matrices, strict=True), strict=True):
            image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
            ax.set_title(name, fontsize=9)
            ax.set_xticks(range(len(severities)), severities)
            ax.set_xlabel("severity")
            ax.set_yticks(range(len(corruptions)), corruptions if ax is axes[0][0] else [])
            for (i, j), v in np.ndenumerate(matrix):
                if not np.isnan(v):
                    color = "black" if v > 0.6 * vmax else "white"  # readable on viridis
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=color)
        metric = metric_label(group[0].get("primary_metric") or "score")
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label=metric)
        title = f"{group[0]['suite']}: {metric} under corruption × severity ({_checks(group)})"
        fig.suptitle(title, fontsize=10)
        out.append((title, _png(fig)))
    return out


def _grid_groups(records: list[Record]) -> dict[str, list[Record]]:
    """Grid records by suite, data and the grid's corruptions × severities (mPC, rPC and
    mCE checks of one grid share a figure)."""
    out: dict[str, list[Record]] = {}
    for r in records:
        table = r["details"]["table"]
        shape = sorted((c, sorted(row)) for c, row in table.items())
        ident = json.dumps([r["suite"], r.get("stamps", {}).get("data"), shape], default=str)
        out.setdefault(ident, []).append(r)
    return out


# -- reliability diagrams -------------------------------------------------------------
def reliability_figures(records: Iterable[Record]) -> Figures:
    """Accuracy against mean confidence per bin (marker area ~ bin count)."""
    out: Figures = []
    for group, series in _detail_series(records, "bins", lambda bins: isinstance(bins, list)):
        fig, ax = _subplots(figsize=(4.8, 4.4))
        ax.plot([0, 1], [0, 1], ls="--", color="black", lw=0.8, label="perfect calibration")
        for (name, bins), color in zip(series.items(), _series_colors(series), strict=True):
            full = [b for b in bins if b.get("count")]
            conf = [b["conf"] for b in full]
            acc = [b["acc"] for b in full]
            total = max(1, sum(b["count"] for b in full))
            sizes = [12 + 400 * b["count"] / total for b in full]
            ax.plot(conf, acc, color=color, lw=1.2, label=name)
            ax.scatter(conf, acc, s=sizes, color=color, alpha=0.6)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean confidence")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8, loc="upper left")
        out.append(_titled(fig, ax, f"{group[0]['suite']}: reliability ({_checks(group)})"))
    return out


# -- latency distributions ------------------------------------------------------------
def latency_figures(records: Iterable[Record]) -> Figures:
    """Box plots of the timed calls (ms) of the baseline and each variant."""
    out: Figures = []
    for group, series in _detail_series(records, "samples_ms", bool):
        fig, ax = _subplots(figsize=(1.6 * len(series) + 3.0, 3.6))
        parts = ax.boxplot(list(series.values()), patch_artist=True, showmeans=True)
        ax.set_xticks(range(1, len(series) + 1), list(series))
        for patch, color in zip(parts["boxes"], _series_colors(series), strict=True):
            patch.set_facecolor(color)
            patch.set_alpha(0.7)
        for i, samples in enumerate(series.values(), start=1):
            jitter = np.linspace(-0.15, 0.15, len(samples))
            ax.scatter(i + jitter, samples, s=6, color="black", alpha=0.4)
        ax.set_ylabel("latency (ms)")
        d = group[0]["details"]
        where = f"{d.get('device', '?')}, batch {d.get('batch_size', '?')}"
        where += f", threads {d['threads']}" if d.get("threads") else ""
        out.append(_titled(fig, ax, f"{group[0]['suite']}: latency ({_checks(group)}; {where})"))
    return out


def _nan(x: Any) -> float:
    return float("nan") if x is None else float(x)

"""Joining the ``results.json`` of the N jobs of one sharded run (``--harness-shard K/N``)
into the one an unsharded run writes (``harness report merge DIR... -o OUT``).

Every job records its part of the plan (``shard``: index, count, the plan's digest, its
units). A merge is refused, naming the file and the fix, when a job is missing or given
twice, when the jobs come from different plans or different code (stamps), or when a
gate appears in two jobs: a merged report never silently lacks or repeats a gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustness_harness.errors import HarnessError
from robustness_harness.report.compare import read_results_document, results_path
from robustness_harness.report.results import write_report

_FIX = "pass the results.json (or --harness-report directory) of every job K/N of one run"
_RUN_STAMPS = ("harness", "torch", "torchvision", "git_commit")


def merged_records(paths: Sequence[str | Path]) -> tuple[list[dict[str, Any]], str, dict]:
    """``(records, started, stamps)`` of the jobs at ``paths``, checked to be all the
    shards of one run; a ``HarnessError`` otherwise."""
    if not paths:
        raise HarnessError("no results to merge", field="DIR", hint=_FIX)
    docs = [(results_path(p), read_results_document(p)) for p in paths]
    first_path, first = docs[0]
    first_shard = _shard(first_path, first)
    count = first_shard["count"]
    seen: dict[int, Path] = {}
    for path, doc in docs:
        shard = _shard(path, doc)
        if shard["count"] != count or shard["plan"] != first_shard["plan"]:
            raise HarnessError(
                f"job {shard['index']}/{shard['count']} is from another sharded run than "
                f"{first_path} (its plan differs)",
                file=path,
                field="shard.plan",
                hint=_FIX + " (same suites, options and --harness-durations)",
            )
        if shard["index"] in seen:
            raise HarnessError(
                f"job {shard['index']}/{count} is given twice (also {seen[shard['index']]})",
                file=path,
                field="shard.index",
                hint=_FIX,
            )
        seen[shard["index"]] = path
        _same_stamps(first_path, first, path, doc)
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        jobs = ", ".join(f"{k}/{count}" for k in missing)
        raise HarnessError(
            f"job(s) {jobs} missing", file=first_path, field="shard.index", hint=_FIX
        )
    records = _union(docs)
    started = min(doc["started"] for _, doc in docs)
    return records, started, dict(first["stamps"])


def merge_reports(paths: Sequence[str | Path], out_dir: Path) -> tuple[Path, Path, int]:
    """Write the merged ``results.json`` and ``report.html`` into ``out_dir``; returns
    their paths and the number of gates."""
    records, started, stamps = merged_records(paths)
    results, page = write_report(out_dir, records, started=started, run_stamps=stamps)
    return results, page, len(records)


def _shard(path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    shard = doc.get("shard")
    if not isinstance(shard, dict):
        raise HarnessError(
            "not the results of a sharded job (no 'shard')",
            file=path,
            field="shard",
            hint="merge the reports of pytest --harness-shard K/N --harness-report DIR",
        )
    return shard


def _same_stamps(a_path: Path, a: dict[str, Any], b_path: Path, b: dict[str, Any]) -> None:
    for key in _RUN_STAMPS:
        if a["stamps"].get(key) != b["stamps"].get(key):
            raise HarnessError(
                f"stamps.{key} is {b['stamps'].get(key)!r} here but "
                f"{a['stamps'].get(key)!r} in {a_path}: the jobs ran different code",
                file=b_path,
                field=f"stamps.{key}",
                hint="run every job of the merge on the same commit and environment",
            )


def _union(docs: Sequence[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every job's records; a suite file that failed to load is reported by every job
    (each collects all suites) and kept once; any other record twice is an error."""
    records: dict[str, dict[str, Any]] = {}
    origin: dict[str, Path] = {}
    for path, doc in docs:
        for item in doc["items"]:
            nodeid = str(item.get("nodeid") or item["suite"])
            if nodeid in records:
                if item.get("variant") is None and _same_collection_error(records[nodeid], item):
                    continue
                raise HarnessError(
                    f"gate {nodeid} is in two jobs (also {origin[nodeid]})",
                    file=path,
                    field="items",
                    hint=_FIX + " from one plan",
                )
            records[nodeid], origin[nodeid] = item, path
    return list(records.values())


def _same_collection_error(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("status", "message", "phase")
    return all(a.get(k) == b.get(k) for k in keys)

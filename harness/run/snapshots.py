"""Baseline snapshots: the recorded value of every (variant, check) of a suite.

``<suite dir>/baselines/<suite name>.json`` holds, per variant and check, the value a
run measured and the stamps of that run (versions, device, data fingerprint, checkpoint
keys, date, git commit). ``--harness-regen`` (``HarnessOptions.regen``) records values;
a check with ``baseline: snapshot`` and ``tolerance: T`` then fails when its value moves
more than ``T`` (absolute) away from the recorded one. A snapshot is never created
silently, and one recorded in another environment (``COMPARED_STAMPS``) is not compared:
the failure names the stamp that differs.

A gate reads its snapshot before it is decided (``load_snapshot``), the decision judges
the value against it without touching files (``judge_snapshot``, from ``decide``), and a
regenerated value is written after (``record_snapshot``).

Writers hold a file lock and read-modify-write the file, replacing it atomically, so
xdist workers recording the same suite keep each other's entries.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from robustness_harness.errors import HarnessError
from robustness_harness.store.cache import atomic_write_json
from robustness_harness.store.versions import git_commit, stamps
from robustness_harness.suite import Suite
from robustness_harness.suite.thresholds import REL_TOL

if TYPE_CHECKING:
    from robustness_harness.run.session import HarnessSession

FORMAT = 1
COMPARED_STAMPS = ("harness", "torch", "torchvision", "pycocotools", "device", "data")
"""Stamps that must match for values to be comparable; the checkpoint keys, date and
commit are recorded for information (a changed checkpoint is what a snapshot judges)."""
REGEN = "--harness-regen"


def snapshot_path(suite: Suite) -> Path:
    """``<suite file's directory>/baselines/<suite name>.json``."""
    return suite.path.parent / "baselines" / f"{suite.spec.suite}.json"


def item_stamps(
    session: HarnessSession, suite: Suite, variant: str, check_name: str
) -> dict[str, str]:
    """What a (variant, check) value depends on: package versions, device type, the
    check's data fingerprint, the checkpoint keys of variant and baseline, plus the
    date (UTC) and git commit of the run."""
    check = suite.spec.checks[check_name]
    device = check.device.split(":")[0] if check.device else session.device.type
    return {
        **stamps(),
        "device": device,
        "data": session.check_data(suite, check_name).fingerprint,
        "checkpoint": session.checkpoint_key(suite, variant),
        "baseline_checkpoint": session.checkpoint_key(suite, suite.spec.baseline),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(suite.path.parent),
    }


# -- the file ---------------------------------------------------------------------------
def read_snapshot(path: Path) -> dict[str, Any] | None:
    """The parsed snapshot file, or None when it does not exist.

    A file that is not a snapshot raises ``HarnessError`` naming it and the fix.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise HarnessError(
            f"the baseline snapshot is unreadable ({exc})",
            file=path,
            hint=f"delete it and run with {REGEN}",
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HarnessError(
            f"not a baseline snapshot of format {FORMAT}",
            file=path,
            hint=f"delete it and run with {REGEN}",
        )
    values = doc.get("values")
    if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
        raise HarnessError(
            "the snapshot has no 'values' mapping of variant -> check -> entry",
            file=path,
            hint=f"delete it and run with {REGEN}",
        )
    return doc


def record(
    path: Path,
    suite_name: str,
    variant: str,
    check: str,
    entry: dict[str, Any],
    keep: set[tuple[str, str]] | None = None,
) -> None:
    """Store ``entry`` for (variant, check) in the snapshot at ``path``.

    Read-modify-write under a file lock, then an atomic replace. Entries whose pair is
    not in ``keep`` (the suite's current gates) are dropped.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.parent / f".{path.name}.lock")):
        doc = read_snapshot(path) or {"format": FORMAT, "suite": suite_name, "values": {}}
        doc["suite"] = suite_name
        doc["values"].setdefault(variant, {})[check] = entry
        if keep is not None:
            doc["values"] = {
                v: kept
                for v, checks in doc["values"].items()
                if (kept := {c: e for c, e in checks.items() if (v, c) in keep})
            }
        atomic_write_json(path, doc)


def lookup(doc: dict[str, Any] | None, variant: str, check: str) -> dict[str, Any] | None:
    """The entry of (variant, check) in a parsed snapshot, if any."""
    if doc is None:
        return None
    entry = doc["values"].get(variant, {}).get(check)
    return entry if isinstance(entry, dict) else None


# -- comparing ----------------------------------------------------------------------------
def stamp_differences(recorded: dict[str, Any], current: dict[str, str]) -> list[str]:
    """``"torch 2.12.0 -> 2.13.0"`` for each compared stamp that differs."""
    out = []
    for name in COMPARED_STAMPS:
        old, new = recorded.get(name), current.get(name)
        if old != new:
            if name == "data":
                old, new = str(old)[:12], str(new)[:12]
            out.append(f"{name} {old} -> {new}")
    return out


def compare(
    entry: dict[str, Any] | None,
    value: float,
    tolerance: float,
    current: dict[str, str],
    where: str,
) -> tuple[float | None, list[str]]:
    """``(recorded value, violations)`` of ``value`` against a snapshot entry.

    ``where`` names the snapshot (file and item) in the messages.
    """
    if entry is None:
        return None, [f"snapshot missing: no value of {where} (run with {REGEN} to record it)"]
    differs = stamp_differences(entry.get("stamps", {}), current)
    if differs:
        return None, [
            f"snapshot not comparable: {where} was recorded with {', '.join(differs)} "
            f"(rerun with {REGEN} to re-record here, or run where it was recorded)"
        ]
    ref = entry.get("value")
    if ref is None or not isinstance(ref, int | float) or math.isnan(ref):
        return None, [f"snapshot unusable: {where} holds no value (rerun with {REGEN})"]
    if math.isnan(value):
        return float(ref), [f"snapshot {ref:.4g}: the value is NaN ({where})"]
    change = value - ref
    if abs(change) > tolerance + REL_TOL * max(1.0, abs(value), abs(ref)):
        return float(ref), [
            f"snapshot {ref:.4g}: changed by {change:+.4g} > tolerance {tolerance:.3g} "
            f"({where}; if the change is intended, rerun with {REGEN})"
        ]
    return float(ref), []


@dataclass(frozen=True)
class SnapshotRef:
    """What deciding a gate against its snapshot needs, read before deciding: the file,
    the current stamps, and either ``regen`` (the value is to be recorded) or the
    recorded ``entry`` (None when missing) with the check's ``tolerance``; ``where``
    names the file and item in messages."""

    path: Path
    metric: str
    stamps: dict[str, str]
    regen: bool
    entry: dict[str, Any] | None = None
    tolerance: float | None = None
    where: str = ""


def load_snapshot(
    session: HarnessSession, suite: Suite, variant: str, check_name: str
) -> SnapshotRef | None:
    """The snapshot a gate is recorded into (``regen``) or judged against (``baseline:
    snapshot``); None when neither applies."""
    check = suite.spec.checks[check_name]
    regen = session.options.regen
    if not regen and check.baseline != "snapshot":
        return None
    path = snapshot_path(suite)
    current = item_stamps(session, suite, variant, check_name)
    if regen:
        return SnapshotRef(path, check.metric, current, regen=True)
    assert check.tolerance is not None  # the schema requires it with baseline: snapshot
    return SnapshotRef(
        path,
        check.metric,
        current,
        regen=False,
        entry=lookup(read_snapshot(path), variant, check_name),
        tolerance=check.tolerance,
        where=f"{variant}::{check_name} in {_display(path)}",
    )


def judge_snapshot(ref: SnapshotRef, value: float) -> tuple[list[str], dict[str, Any]]:
    """``(violations, what the report shows)`` of a gate's value against its snapshot;
    a value to be recorded (``regen``) is shown as recorded and violates nothing."""
    if ref.regen:
        return [], {"path": str(ref.path), "recorded": True, "value": _json_number(value)}
    assert ref.tolerance is not None
    recorded, violations = compare(ref.entry, value, ref.tolerance, ref.stamps, ref.where)
    shown = {
        "path": str(ref.path),
        "recorded": False,
        "value": recorded,
        "tolerance": ref.tolerance,
    }
    return violations, shown


def record_snapshot(
    ref: SnapshotRef, suite: Suite, variant: str, check_name: str, value: float
) -> None:
    """Record a decided gate's value into its snapshot (``--harness-regen``), keeping
    the entries of the suite's other current gates."""
    entry = {"metric": ref.metric, "value": _json_number(value), "stamps": ref.stamps}
    record(ref.path, suite.spec.suite, variant, check_name, entry, keep=set(suite.spec.items()))


def with_tolerance(thresholds: str, snapshot: dict[str, Any]) -> str:
    """A threshold description with the snapshot's tolerance, e.g. ``drop_max 0.1,
    snapshot ±0.01`` (``snapshot ±0.01`` alone for a snapshot-only check)."""
    if snapshot.get("tolerance") is None:
        return thresholds
    tol = f"snapshot ±{snapshot['tolerance']:g}"
    return tol if thresholds in ("", "no thresholds") else f"{thresholds}, {tol}"


def _json_number(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else float(x)


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)

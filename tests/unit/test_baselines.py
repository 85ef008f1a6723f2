"""Baseline snapshots: the schema keys, round trip, comparison messages, concurrent
regeneration."""

from __future__ import annotations

import json
import math
import multiprocessing
from pathlib import Path
from types import SimpleNamespace

import pytest

from robustness_harness.errors import HarnessError, SpecError
from robustness_harness.run.snapshots import (
    compare,
    lookup,
    read_snapshot,
    record,
    stamp_differences,
)
from robustness_harness.suite import parse_suite
from tests.unit.builders import MINIMAL_SUITE

SUITE = MINIMAL_SUITE + "  c: CHECK\n"

STAMPS = {
    "harness": "0.1.0",
    "torch": "2.13.0",
    "torchvision": "0.28.0",
    "pycocotools": "2.0.11",
    "device": "cpu",
    "data": "d" * 64,
    "checkpoint": "k" * 64,
    "baseline_checkpoint": "b" * 64,
    "date": "2026-01-01T00:00:00+00:00",
    "git_commit": "abc",
}


def _check(text: str) -> object:
    return parse_suite(SUITE.replace("CHECK", text), "suite.yaml").spec.checks["c"]


# -- schema ---------------------------------------------------------------------------------
def test_snapshot_keys_parse(spec_registries: SimpleNamespace) -> None:
    check = _check("{metric: map, baseline: snapshot, tolerance: 1/100}")
    assert (check.baseline, check.tolerance) == ("snapshot", 0.01)
    both = _check("{metric: map, drop_max: 0.1, baseline: snapshot, tolerance: 0}")
    assert both.drop_max == 0.1 and both.tolerance == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "{metric: map, baseline: snapshot}",
            r"checks\.c\.baseline: baseline: snapshot needs a tolerance .*add tolerance: 0\.01",
        ),
        (
            "{metric: map, drop_max: 0.1, tolerance: 0.01}",
            r"checks\.c\.tolerance: tolerance applies only .*add baseline: snapshot",
        ),
        (
            "{metric: map, baseline: dense, tolerance: 0.01}",
            r"checks\.c\.baseline: baseline 'dense' is not implemented; known: snapshot",
        ),
        (
            "{metric: map, baseline: snapshot, tolerance: -0.1}",
            r"checks\.c\.tolerance: .*>= 0",
        ),
        ("{metric: map}", r"checks\.c: the check has no threshold"),
    ],
)
def test_exception_snapshot_keys(
    spec_registries: SimpleNamespace, text: str, expected: str
) -> None:
    with pytest.raises(SpecError, match=expected) as info:
        _check(text)
    assert "\n" not in str(info.value)


# -- file -----------------------------------------------------------------------------------
def test_round_trip_and_stale_entries_dropped(tmp_path: Path) -> None:
    path = tmp_path / "baselines" / "s.json"
    assert read_snapshot(path) is None
    entry = {"metric": "map", "value": 0.5, "stamps": STAMPS}
    record(path, "s", "small", "c", entry)
    record(path, "s", "small", "gone", {**entry, "value": 0.1})
    record(path, "s", "other", "c", {**entry, "value": 0.7})
    doc = read_snapshot(path)
    assert lookup(doc, "small", "c") == entry and lookup(doc, "other", "c")["value"] == 0.7
    record(path, "s", "small", "c", {**entry, "value": 0.6}, keep={("small", "c")})
    doc = read_snapshot(path)
    assert doc is not None and doc["values"] == {"small": {"c": {**entry, "value": 0.6}}}
    assert not list(path.parent.glob(".s.json.tmp-*"))  # the atomic write left no temp file


def test_exception_unreadable_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(HarnessError, match=r"s\.json: the baseline snapshot is unreadable.*regen"):
        read_snapshot(path)
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(HarnessError, match="not a baseline snapshot of format 1"):
        read_snapshot(path)


def _record_many(path: Path, variant: str, n: int) -> None:
    for i in range(n):
        record(path, "s", variant, f"c{i}", {"metric": "map", "value": i, "stamps": {}})


def test_concurrent_writers_keep_every_entry(tmp_path: Path) -> None:
    """Read-modify-write under the lock: four processes recording into one file lose
    nothing (xdist workers regenerating one suite)."""
    path = tmp_path / "baselines" / "s.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(path, f"v{w}", 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    doc = read_snapshot(path)
    assert doc is not None
    assert {v: len(checks) for v, checks in doc["values"].items()} == {
        f"v{w}": 15 for w in range(4)
    }


# -- comparison -----------------------------------------------------------------------------
def test_compare_within_and_beyond_tolerance() -> None:
    entry = {"value": 0.5, "stamps": STAMPS}
    assert compare(entry, 0.505, 0.01, STAMPS, "v::c") == (0.5, [])
    assert compare(entry, 0.49, 0.01, STAMPS, "v::c") == (0.5, [])  # equality passes
    ref, violations = compare(entry, 0.48, 0.01, STAMPS, "v::c in b/s.json")
    assert ref == 0.5
    assert violations == [
        "snapshot 0.5: changed by -0.02 > tolerance 0.01 "
        "(v::c in b/s.json; if the change is intended, rerun with --harness-regen)"
    ]
    _, up = compare(entry, 0.53, 0.01, STAMPS, "v::c")
    assert up and "changed by +0.03 > tolerance" in up[0]
    _, nan = compare(entry, math.nan, 0.01, STAMPS, "v::c")
    assert nan and "NaN" in nan[0]


def test_compare_missing_snapshot_says_regen() -> None:
    ref, violations = compare(None, 0.5, 0.01, STAMPS, "small::c in suites/baselines/s.json")
    assert ref is None
    assert violations == [
        "snapshot missing: no value of small::c in suites/baselines/s.json "
        "(run with --harness-regen to record it)"
    ]


def test_compare_stamp_mismatch_names_the_stamp() -> None:
    old = {**STAMPS, "torch": "2.12.0", "data": "e" * 64, "checkpoint": "other", "date": "x"}
    ref, violations = compare({"value": 0.5, "stamps": old}, 0.5, 0.01, STAMPS, "v::c")
    assert ref is None
    (message,) = violations
    assert message.startswith(
        "snapshot not comparable: v::c was recorded with torch 2.12.0 -> 2.13.0, "
        "data eeeeeeeeeeee -> dddddddddddd ("
    )
    assert "rerun with --harness-regen to re-record here" in message
    # checkpoint, date and commit are information, not comparability
    assert stamp_differences({**STAMPS, "checkpoint": "x", "git_commit": "y"}, STAMPS) == []

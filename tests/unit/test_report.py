"""Report records, results.json against its schema, and the HTML page's plots."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from PIL import Image

from robustness_harness.errors import HarnessError
from robustness_harness.report.results import (
    SCHEMA_PATH,
    collection_record,
    error_message,
    gate_record,
    jsonable,
    outcome_record,
    skipped_record,
    write_report,
)
from robustness_harness.run.outcome import GateStatistics
from robustness_harness.suite import CheckSpec
from robustness_harness.suite.thresholds import Interval
from robustness_harness_pytest.summary import render_summary
from tests.unit.builders import ITEM_STAMPS as STAMPS
from tests.unit.builders import decided_outcome

CLASSES = ("car", "bus", "train")


def _record(
    variant: str,
    check: str,
    spec: dict[str, Any],
    cand: Any,
    base: Any,
    statistics: GateStatistics | None = None,
    **extra: Any,
) -> dict[str, Any]:
    check_spec = CheckSpec.model_validate(spec)
    outcome = decided_outcome(
        check_spec,
        cand,
        base,
        variant=variant,
        name=check,
        n_images=10,
        statistics=statistics,
        **extra,
    )
    record = outcome_record(
        outcome, params=check_spec.params, item_stamps=STAMPS, primary_metric="map"
    )
    status = "passed" if outcome.passed else "failed"
    return {**record, "status": status, "duration_s": 0.5, "nodeid": f"s.yaml::{variant}::{check}"}


def _bins(shift: float) -> list[dict[str, Any]]:
    return [
        {
            "lo": i / 5,
            "hi": (i + 1) / 5,
            "count": 3 + i,
            "acc": min(1.0, i / 5 + shift),
            "conf": i / 5,
        }
        for i in range(5)
    ]


def _table(scale: float) -> dict[str, dict[str, float]]:
    return {c: {str(s): 0.6 - scale * 0.1 * s for s in (1, 3)} for c in ("fog", "gaussian_noise")}


@pytest.fixture
def records() -> list[dict[str, Any]]:
    base_ap = {"car": 0.7, "bus": 0.5, "train": 0.3}
    grid = {"table": _table(1.2), "baseline_table": _table(1.0), "clean": 0.6}
    latency = {"samples_ms": [3.0, 3.2, 2.9], "device": "cpu", "batch_size": 1, "threads": 2}
    return [
        _record(
            "p30",
            "worst",
            {"metric": "per_class_ap", "reduce": "worst_drop", "max": 0.15},
            {"car": 0.6, "bus": 0.45, "train": math.nan},
            base_ap,
        ),
        _record(
            "p50",
            "worst",
            {"metric": "per_class_ap", "reduce": "worst_drop", "max": 0.15},
            {"car": 0.4, "bus": 0.3, "train": 0.1},
            base_ap,
        ),
        _record(
            "p30",
            "mpc",
            {"metric": "mpc", "corruptions": ["fog"], "drop_max": 0.5},
            0.3,
            0.4,
            details=grid,
            baseline_details=grid,
        ),
        _record(
            "p30",
            "ece",
            {"metric": "ece", "increase_max": 0.1},
            0.08,
            0.05,
            details={"bins": _bins(0.1)},
            baseline_details={"bins": _bins(0.0)},
        ),
        _record(
            "p30",
            "lat",
            {"metric": "latency_ms", "ratio_max": 0.9},
            3.1,
            5.0,
            details=latency,
            baseline_details={**latency, "samples_ms": [5.0, 5.1]},
        ),
        skipped_record("s", "p30", "lat_cuda", "latency_ms", "no CUDA GPU is present"),
    ]


def test_jsonable_is_strict_json() -> None:
    value = {1: (np.float32(0.5), math.nan, math.inf), "x": [np.int64(3), Path("a")]}
    assert jsonable(value) == {"1": [0.5, None, None], "x": [3, "a"]}
    json.dumps(jsonable(value), allow_nan=False)


def test_results_json_validates(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    results, _ = write_report(tmp_path / "out", records)
    doc = json.loads(results.read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    assert doc["summary"] == {"total": 6, "passed": 4, "failed": 1, "error": 0, "skipped": 1}
    assert doc["counts"] == {"passed": 4, "failed": 1, "error": 0, "skipped": 1}
    worst = next(r for r in doc["items"] if r["variant"] == "p50" and r["check"] == "worst")
    assert worst["status"] == "failed" and worst["worst_class"] == "car"
    assert worst["thresholds"] == {"max": 0.15} and worst["violations"]
    nan_class = next(r for r in doc["items"] if r["variant"] == "p30" and r["check"] == "worst")
    assert nan_class["per_class"]["train"] is None  # NaN is null in strict JSON
    json.loads(results.read_text(), parse_constant=pytest.fail)  # no NaN/Infinity tokens


def test_exception_schema_rejects_a_bad_item(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    results, _ = write_report(tmp_path, records)
    doc = json.loads(results.read_text())
    doc["items"][0]["status"] = "maybe"
    with pytest.raises(jsonschema.ValidationError, match="'maybe' is not one of"):
        jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    del doc["items"][0]["stamps"]
    doc["items"][0]["status"] = "passed"
    with pytest.raises(jsonschema.ValidationError, match="'stamps' is a required property"):
        jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))


def test_html_has_the_four_plots_and_the_failure(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    _, page = write_report(tmp_path, records)
    text = page.read_text()
    titles = re.findall(r"<figcaption>([^<]+)</figcaption>", text)
    assert [t.split(": ", 1)[1].split(" (")[0] for t in titles] == [
        "per-class AP",
        "mAP under corruption × severity",
        "reliability",
        "latency",
    ]
    for data in re.findall(r"src='data:image/png;base64,([^']+)'", text):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.width > 200 and image.height > 100
    assert "worst per-class AP drop 0.300 (class &#x27;car&#x27;: 0.700 -&gt; 0.400)" in text
    assert "no CUDA GPU is present" in text and ">SKIPPED<" in text


def test_confidence_interval_in_results_and_table(tmp_path: Path) -> None:
    stats = GateStatistics(
        decide="conservative",
        method="bootstrap",
        intervals={"drop": Interval(0.01, 0.05, 0.95)},
        resamples=1000,
    )
    rec = _record("p30", "map", {"metric": "map", "drop_max": 0.1}, 0.47, 0.5, statistics=stats)
    results, page = write_report(tmp_path, [rec])
    doc = json.loads(results.read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    (item,) = doc["items"]
    assert item["ci"] == {"drop": {"low": 0.01, "high": 0.05, "confidence": 0.95}}
    assert item["statistics"]["decide"] == "conservative"
    assert item["statistics"]["resamples"] == 1000
    assert "drop [0.0100, 0.0500]" in page.read_text()


def _errored(check: str, phase: str, message: str) -> dict[str, Any]:
    return gate_record("s", "p30", check, "map", status="error", message=message, phase=phase)


@pytest.fixture
def error_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The measured records plus one error per phase: a HarnessError in call, an
    exception in setup, a gate that passed and then raised in teardown (pytest counts
    it twice), and a suite file that failed to load."""
    passed_then_teardown = {
        **records[0],
        "status": "error",
        "phase": "teardown",
        "message": "OSError: device busy",
        "outcomes": ["passed", "error"],
    }
    return [
        *records[1:],
        _errored("boom", "call", str(HarnessError("empty", file="l.txt", hint="regenerate"))),
        _errored("setup", "setup", "RuntimeError: no GPU lease"),
        passed_then_teardown,
        collection_record("suites/broken.yaml", "suites/broken.yaml:3: checks: bad\nsecond"),
    ]


def test_error_records_validate_and_count_like_pytest(
    tmp_path: Path, error_records: list[dict[str, Any]]
) -> None:
    results, page = write_report(tmp_path, error_records)
    doc = json.loads(results.read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    assert doc["summary"] == {"total": 9, "passed": 3, "failed": 1, "error": 4, "skipped": 1}
    # pytest: the call's HarnessError is a failed test, setup/teardown/collection errors
    # are errors, and the gate whose teardown raised also passed
    assert doc["counts"] == {"passed": 4, "failed": 2, "error": 3, "skipped": 1}
    broken = next(r for r in doc["items"] if r.get("phase") == "collect")
    assert (
        broken["variant"] is None
        and broken["message"] == "suites/broken.yaml:3: checks: bad second"
    )
    text = page.read_text()
    assert text.count("<td class='error'>ERROR</td>") == 4
    assert "l.txt: empty (fix: regenerate)" in text and "RuntimeError: no GPU lease" in text
    assert "9</b> gates: 3 passed, 1 failed, 4 errors, 1 skipped" in text
    assert "as pytest counts them: 4 passed, 2 failed, 3 errors, 1 skipped" in text


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"message": "two\nlines"}, "does not match"),
        ({"phase": None}, "None is not one of"),
        ({"variant": None}, "None is not of type 'string'"),
    ],
)
def test_exception_schema_rejects_a_bad_error_item(
    tmp_path: Path, change: dict[str, Any], error: str
) -> None:
    results, _ = write_report(tmp_path, [_errored("boom", "call", "ValueError: x")])
    doc = json.loads(results.read_text())
    doc["items"][0].update(change)
    with pytest.raises(jsonschema.ValidationError, match=error):
        jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            HarnessError("bad\n value", file="a.yaml", hint="fix it"),
            "a.yaml: bad value (fix: fix it)",
        ),
        (ValueError("first line\n  Traceback (most recent call last):"), "ValueError: first line"),
        (KeyError("weight"), "KeyError: 'weight'"),
        (RuntimeError(), "RuntimeError"),
        (OSError("\n\nafter blank lines\nnext"), "OSError: after blank lines"),
    ],
)
def test_error_message_is_one_line(exc: BaseException, line: str) -> None:
    assert error_message(exc) == line


def test_gate_table_lists_errors_with_message_and_pytest_counts() -> None:
    def row(check: str, status: str, message: str = "", **props: Any) -> dict[str, Any]:
        outcomes = {"error": ["failed"], "skipped": ["skipped"]}.get(status, [status])
        return {
            "nodeid": f"suites/s.yaml::p30::{check}",
            "harness_variant": "p30",
            "harness_check": check,
            "status": status,
            "message": message,
            "outcomes": outcomes,
            **props,
        }

    rows = [
        row("map", "passed", harness_value=0.5, harness_threshold="drop_max 0.1"),
        row("boom", "error", "a.yaml: bad (fix: x)"),
        row("cuda", "skipped", "no CUDA GPU is present"),
        {
            **row("-", "error", "suites/b.yaml: bad"),
            "nodeid": "suites/b.yaml",
            "outcomes": ["error"],
        },
    ]
    text = render_summary(rows)
    assert re.search(r"p30\s+boom\s+ERROR\s+a\.yaml: bad \(fix: x\)", text), text
    assert re.search(r"p30\s+cuda\s+SKIP\s+no CUDA GPU is present", text), text
    assert re.search(r"suites/b\.yaml\n.*\n.*ERROR\s+suites/b\.yaml: bad", text), text
    assert text.splitlines()[-1] == (
        "4 gates: 1 passed, 0 failed, 2 errors, 1 skipped (pytest: 1 passed, 1 failed, 1 error, "
        "1 skipped)"
    )

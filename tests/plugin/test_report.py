"""--harness-report under two xdist workers: results.json validates against its schema,
report.html renders every plot in headless Chromium; --harness-regen in the same run
records every gate from both workers into one snapshot file."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import torch
from PIL import Image

from robustness_harness.report.results import SCHEMA_PATH
from tests.plugin.suite_texts import magnitude, suite_text

SUITE = suite_text(
    "rep",
    magnitude(30) + magnitude(60),
    """\
  map_snapshot: {metric: map, drop_max: 1.0, baseline: snapshot, tolerance: 0.001}
  worst_class: {metric: per_class_ap, reduce: worst_drop, max: 1.0}
  calibration: {metric: ece, bins: 10, increase_max: 1.0}
  corruption: {metric: mpc, corruptions: [gaussian_noise, fog], severities: [1, 3], images: 12,
               ratio_min: 0}
  latency: {metric: latency_ms, iters: 6, warmup: 1, ratio_max: 100}
  latency_cuda: {metric: latency_ms, device: cuda, iters: 3, ratio_max: 100}
""",
)

CHROMIUM = next(
    (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@dataclass(frozen=True)
class Run:
    root: Path
    out: str

    @property
    def results(self) -> dict:
        return json.loads((self.root / "out" / "results.json").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Run:
    """One `pytest suites -n 2 --harness-regen --harness-report out` run of SUITE."""
    root = tmp_path_factory.mktemp("report")
    (root / "suites").mkdir()
    (root / "suites" / "rep.yaml").write_text(SUITE)
    args = ["suites", "-n", "2", "--harness-regen", "--harness-report", "out"]
    args += ["--harness-limit", "24", "--harness-data-root", str(shared_data_root)]
    args += ["--harness-cache", str(root / "cache"), "-p", "no:cacheprovider", "-rs"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return Run(root, out)


@pytest.mark.slow
def test_results_json_validates_and_holds_plot_data(run: Run) -> None:
    assert "harness report: out/report.html (12 gates)" in run.out
    doc = run.results
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    skipped = 0 if torch.cuda.is_available() else 2
    counts = {"passed": 12 - skipped, "failed": 0, "error": 0, "skipped": skipped}
    assert doc["summary"] == {"total": 12, **counts} and doc["counts"] == counts
    items = {(r["variant"], r["check"]): r for r in doc["items"]}
    worst = items["magnitude-60", "worst_class"]
    assert (
        set(worst["per_class"])
        == set(worst["baseline_per_class"])
        == {"car", "person", "bicycle", "truck", "bus", "train"}
    )
    assert worst["thresholds"] == {"max": 1.0} and worst["status"] == "passed"
    corruption = items["magnitude-30", "corruption"]["details"]
    assert set(corruption["table"]) == {"gaussian_noise", "fog"}
    assert set(corruption["table"]["fog"]) == {"1", "3"} and corruption["baseline_table"]
    calibration = items["magnitude-30", "calibration"]
    assert len(calibration["details"]["bins"]) == 11  # 10 bins + the confidence-1.0 bin
    assert calibration["baseline_details"]["bins"]
    latency = items["magnitude-30", "latency"]
    assert (
        len(latency["details"]["samples_ms"]) == len(latency["baseline_details"]["samples_ms"]) == 6
    )
    snap = items["magnitude-30", "map_snapshot"]
    assert snap["snapshot"]["recorded"] and snap["value"] == snap["snapshot"]["value"]
    assert snap["stamps"]["checkpoint"] != snap["stamps"]["baseline_checkpoint"]
    assert all(r["duration_s"] >= 0 for r in doc["items"] if r["status"] != "skipped")


@pytest.mark.slow
def test_regen_from_two_workers_lands_in_one_snapshot(run: Run) -> None:
    assert "gw0" in run.out and "gw1" in run.out  # both workers ran gates
    doc = json.loads((run.root / "suites" / "baselines" / "rep.json").read_text())
    expected = {"map_snapshot", "worst_class", "calibration", "corruption", "latency"}
    if torch.cuda.is_available():
        expected.add("latency_cuda")
    assert {v: set(c) for v, c in doc["values"].items()} == {
        "magnitude-30": expected,
        "magnitude-60": expected,
    }
    by_item = {(r["variant"], r["check"]): r["value"] for r in run.results["items"]}
    assert (
        doc["values"]["magnitude-60"]["map_snapshot"]["value"]
        == by_item["magnitude-60", "map_snapshot"]
    )


@pytest.mark.slow
def test_report_html_is_self_contained_with_every_plot(run: Run) -> None:
    page = (run.root / "out" / "report.html").read_text()
    assert not re.search(r"(src|href)=['\"](?!data:)", page)  # nothing to fetch
    pngs = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    titles = re.findall(r"<figcaption>([^<]+)</figcaption>", page)
    assert len(pngs) == len(titles) == 4, titles
    for kind in ("per-class AP", "under corruption", "reliability", "latency"):
        assert any(kind in t for t in titles), (kind, titles)
    for data in pngs:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.format == "PNG" and image.width > 200 and image.height > 150
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50  # a plot, not a blank canvas


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run: Run, tmp_path: Path) -> None:
    url = (run.root / "out" / "report.html").as_uri()
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1400,2600", url)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 2600)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500  # text, tables and four plots
    white = dict((rgb, count) for count, rgb in colours).get((255, 255, 255), 0)
    assert white < 0.96 * image.width * image.height  # the plots are not blank
    dom = _chromium("--dump-dom", url).stdout
    assert dom.count("<img") == 4 and "PASSED" in dom


def test_exception_report_path_is_a_file(pytester: pytest.Pytester) -> None:
    (pytester.path / "taken").write_text("")
    result = pytester.runpytest("--harness-report", "taken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--harness-report 'taken' is a file; pass a directory*"])

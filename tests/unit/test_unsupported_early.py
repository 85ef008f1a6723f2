"""An unsupported (architecture × method) pair is known before anything trains (issue 17
part 6): the session dry-runs a variant's steps before building it, the error is one line
naming variant, method and architecture, the build is attempted once per session (not
once per check), and ``harness validate --deep`` reports the same line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import robustness_harness.run.session as session_module
from robustness_harness.compress import METHODS
from robustness_harness.compress.base import MethodInfo
from robustness_harness.errors import HarnessError
from robustness_harness.run.dry_run import dry_run_steps
from robustness_harness.run.session import HarnessOptions, HarnessSession
from tests.unit.test_validate_deep import make_project, suite_file, validate

BRANCHY = (
    "{factory: 'deeppkg.net:build_branchy', checkpoint: net.safetensors, task: classification}"
)
PRUNE_THEN_INT8 = (
    "  pq:\n    compress: [{prune: {method: l1_filter, sparsity: 0.3}}, "
    "{quantize: {method: ptq_int8, calibration_images: 4}}]\n"
    "    finetune: {epochs: 1, batch_size: 4}\n"
)
EXPECTED = "variants.pq.compress[1].quantize.method: ptq_int8 cannot compress Branchy: torch.fx"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_project(tmp_path, monkeypatch)


def test_failing_quantize_step_stops_before_the_float_model_fine_tunes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def counted(*args, **kwargs) -> None:
        calls.append(kwargs["variant"])
        dry_run_steps(*args, **kwargs)

    monkeypatch.setattr(session_module, "dry_run_steps", counted)
    lines: list[str] = []
    session = HarnessSession(
        HarnessOptions(cache_dir=str(project / "cache")), progress=lines.append
    )
    suite = session.suite(suite_file(project, model=BRANCHY, variants=PRUNE_THEN_INT8, train=True))
    with pytest.raises(HarnessError) as first:
        session.model(suite, "pq")
    message = str(first.value)
    assert message.startswith(f"{project / 'suite.yaml'}: {EXPECTED}"), message
    assert "(fix: " in message and "\n" not in message
    assert not any("fine-tun" in line or "built checkpoint" in line for line in lines), lines
    with pytest.raises(HarnessError) as again:  # the next check of the variant
        session.model(suite, "pq")
    assert str(again.value) == message
    assert calls == ["pq"]  # dry-run (and build) attempted once


@pytest.mark.slow
def test_supported_steps_still_build(project: Path) -> None:
    variants = PRUNE_THEN_INT8.replace("build_branchy", "build")
    lines: list[str] = []
    session = HarnessSession(
        HarnessOptions(cache_dir=str(project / "cache")), progress=lines.append
    )
    suite = session.suite(suite_file(project, variants=variants, train=True))
    session.model(suite, "pq")
    assert any("fine-tuning 1 epoch" in line for line in lines), lines
    assert any("built checkpoint deep/pq" in line for line in lines), lines


def test_validate_deep_reports_the_same_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = suite_file(project, model=BRANCHY, variants=PRUNE_THEN_INT8, train=True)
    code, out = validate(path, capsys, "--deep")
    assert code == 1, out
    assert f"{path}: {EXPECTED}" in out, out
    assert out.count("ptq_int8 cannot compress") == 1, out


def test_a_raw_library_error_becomes_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A method that fails inside a library (torch-pruning's IndexError on a layer
    pattern it cannot follow) gives the exception's first line, no traceback."""
    real = METHODS.get("l1_filter")

    def broken(model: nn.Module, params, ctx) -> nn.Module:
        raise IndexError("index 8 is out of bounds for dimension 0 with size 8\nmore")

    fake = MethodInfo(**{**real.__dict__, "fn": broken})
    monkeypatch.setattr(METHODS, "get", lambda name, **_kw: fake)
    step = type("Step", (), {"method": "l1_filter", "params": None, "modules": ()})()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm([4, 2, 2]))
    with pytest.raises(HarnessError) as err:
        dry_run_steps(
            model,
            [step],
            torch.rand(2, 3, 4, 4),
            seed=0,
            task="classification",
            suite_path="s.yaml",
            variant="v",
        )
    assert str(err.value) == (
        "s.yaml: variants.v.compress[0]: l1_filter cannot compress Sequential: IndexError: "
        "index 8 is out of bounds for dimension 0 with size 8 (fix: use a method that "
        "supports this architecture (e.g. prune: {method: global_magnitude} works on any "
        "Conv/Linear model), or drop the step)"
    )

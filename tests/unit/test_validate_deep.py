"""`harness validate --deep`: the preflight finds what plain validation calls "ok"."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from robustness_harness.cli import main
from robustness_harness.data.toysigns import generate_toysigns

NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes: int = 12, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


class Branchy(Net):
    """Data-dependent control flow: torch.fx cannot trace it (no int8 PTQ)."""

    def forward(self, x):
        if x.sum() > 0:
            return super().forward(x)
        return super().forward(-x)


def build(num_classes: int = 12, width: int = 8) -> nn.Module:
    return Net(num_classes, width)


def build_branchy(num_classes: int = 12) -> nn.Module:
    return Branchy(num_classes)
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user project: a factory package, weights, a small COCO classification set."""
    return make_project(tmp_path, monkeypatch)


def make_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``deeppkg.net`` (``NET``) importable from ``tmp_path`` (the current directory),
    its weights, and a toysigns COCO set with train and val splits."""
    (tmp_path / "deeppkg").mkdir()
    (tmp_path / "deeppkg" / "__init__.py").write_text("")
    (tmp_path / "deeppkg" / "net.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [m for m in sys.modules if m.startswith("deeppkg")]:
        monkeypatch.delitem(sys.modules, name)
    paths = generate_toysigns(tmp_path / "data", n_train=16, n_val=8)
    torch.manual_seed(0)
    sys.path.insert(0, str(tmp_path))
    from deeppkg.net import build  # type: ignore[import-not-found]

    save_file(build().state_dict(), tmp_path / "net.safetensors")
    wide = {k: v.contiguous() for k, v in build(width=16).state_dict().items()}
    save_file(wide, tmp_path / "wide.safetensors")
    (tmp_path / "paths.txt").write_text(f"{paths['images']}\n{paths['val']}\n{paths['train']}")
    return tmp_path


def suite_file(project: Path, *, model: str = "", variants: str = "", train: bool = False) -> Path:
    images, val, train_json = (project / "paths.txt").read_text().split("\n")
    model = (
        model or "{factory: 'deeppkg.net:build', checkpoint: net.safetensors, task: classification}"
    )
    train_line = f"  train: {{images: {images}, annotations: {train_json}}}\n" if train else ""
    text = (
        f"suite: deep\nmodel: {model}\n"
        f"data:\n  coco: {{images: {images}, annotations: {val}}}\n{train_line}"
        "baseline: dense\nvariants:\n  dense: {}\n"
        f"{variants}"
        "checks:\n  acc: {metric: accuracy, min: 0.0}\n"
    )
    path = project / "suite.yaml"
    path.write_text(text)
    return path


def validate(path: Path, capsys: pytest.CaptureFixture[str], *deep: str) -> tuple[int, str]:
    code = main(["validate", *deep, str(path), "--cache", str(path.parent / "cache")])
    return code, capsys.readouterr().out


def test_good_suite_passes_deep(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    variants = "  int8:\n    compress: [{quantize: {method: ptq_int8, calibration_images: 4}}]\n"
    code, out = validate(suite_file(project, variants=variants, train=True), capsys, "--deep")
    assert code == 0, out
    assert out.startswith("ok ") and "deep" in out


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("broken import", "cannot import module 'deeppkg.nowhere'"),
        ("missing image", "images cannot be opened"),
        ("wrong checkpoint", "wide.safetensors: checkpoint does not fit Net"),
        ("untraceable for int8", "variants.int8.compress[0].quantize"),
    ],
)
def test_deep_finds_what_plain_validate_calls_ok(
    project: Path, capsys: pytest.CaptureFixture[str], case: str, expect: str
) -> None:
    model, variants = "", ""
    if case == "broken import":
        model = (
            "{factory: 'deeppkg.nowhere:build', checkpoint: net.safetensors, task: classification}"
        )
    elif case == "missing image":
        images = Path((project / "paths.txt").read_text().split("\n")[0])
        next(iter(sorted((images / "val").rglob("*.png")))).unlink()
    elif case == "wrong checkpoint":
        variants = "  wide: {checkpoint: wide.safetensors}\n"
    else:
        model = (
            "{factory: 'deeppkg.net:build_branchy', checkpoint: net.safetensors, "
            "task: classification}"
        )
        variants = (
            "  int8:\n    compress: [{quantize: {method: ptq_int8, calibration_images: 4}}]\n"
        )
    path = suite_file(project, model=model, variants=variants, train=True)
    code, out = validate(path, capsys)
    assert code == 0 and out.startswith("ok "), out  # the schema alone cannot see it
    code, out = validate(path, capsys, "--deep")
    assert code == 1, out
    lines = [line for line in out.splitlines() if line.startswith("INVALID")]
    assert lines and all(str(project) in line for line in lines), out  # names the file
    assert any(expect in line for line in lines), out
    assert "Traceback" not in out


def test_missing_training_set_is_found_without_deep(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    variants = "  tuned: {finetune: {epochs: 1}}\n"
    code, out = validate(suite_file(project, variants=variants), capsys)
    assert code == 1 and "data.train" in out and "tuned" in out, out


def test_one_batch_catches_a_model_that_cannot_take_the_images(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "deeppkg" / "fixed.py").write_text(
        "from torch import nn\n\ndef build(num_classes: int = 12) -> nn.Module:\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, num_classes))\n"
    )
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 12))
    save_file(net.state_dict(), project / "fixed.safetensors")
    model = "{factory: 'deeppkg.fixed:build', checkpoint: fixed.safetensors, task: classification}"
    code, out = validate(suite_file(project, model=model), capsys, "--deep")
    assert code == 1, out
    assert "INVALID" in out and "Traceback" not in out and str(project) in out

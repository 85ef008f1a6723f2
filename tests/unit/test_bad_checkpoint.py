"""Bad weights give one-line CheckpointErrors naming the file and a fix, never a traceback.

User checkpoints go through ``load_user_weights``; harness checkpoints (cache entries)
through ``load_checkpoint``. Each case writes the bad file from a tiny model's weights.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from robustness_harness.errors import CheckpointError
from robustness_harness.store.checkpoint import (
    STRUCTURE_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    load_user_weights,
)
from robustness_harness.store.checkpoint import save_checkpoint as save_harness_checkpoint


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def floats(fn: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tiny model's state dict with ``fn`` applied to its float tensors."""
    return {k: fn(v) if v.is_floating_point() else v for k, v in tiny().state_dict().items()}


def good_bytes(tmp: Path) -> bytes:
    save_file(tiny().state_dict(), tmp / "good.safetensors")
    return (tmp / "good.safetensors").read_bytes()


def torch_bytes(obj: object, tmp: Path) -> bytes:
    torch.save(obj, tmp / "obj.pt")
    return (tmp / "obj.pt").read_bytes()


# name -> (file name, writer(path, tmp), expected substrings)
USER_CASES: dict[str, tuple[str, Callable[[Path, Path], object], list[str]]] = {
    "safetensors_garbage": (
        "w.safetensors",
        lambda p, _t: p.write_bytes(b"\x10\0\0\0\0\0\0\0{not json}......"),
        ["corrupt or truncated safetensors", "save_file"],
    ),
    "safetensors_truncated": (
        "w.safetensors",
        lambda p, t: p.write_bytes(good_bytes(t)[:200]),
        ["corrupt or truncated safetensors"],
    ),
    "safetensors_empty_file": (
        "w.safetensors",
        lambda p, _t: p.write_bytes(b""),
        ["corrupt or truncated safetensors", "header too small"],
    ),
    "pt_not_a_torch_file": (
        "w.pt",
        lambda p, _t: p.write_text("epoch=3 loss=0.1\n"),
        ["cannot read the checkpoint", "torch.save(model.state_dict(), path)"],
    ),
    "pt_truncated": (
        "w.pt",
        lambda p, t: p.write_bytes(torch_bytes(tiny().state_dict(), t)[:300]),
        ["cannot read the checkpoint", "state_dict"],
    ),
    "pt_pickled_module": (
        "w.pt",
        lambda p, t: p.write_bytes(torch_bytes({"model": tiny()}, t)),
        ["refused to unpickle", "weights_only=True"],
    ),
    "pt_without_tensors": (
        "w.pt",
        lambda p, t: p.write_bytes(torch_bytes({"epoch": 3, "lr": 0.1}, t)),
        ["expected a state dict", "['epoch', 'lr']"],
    ),
    "unsupported_suffix": (
        "w.ckpt",
        lambda p, t: p.write_bytes(torch_bytes(tiny().state_dict(), t)),
        ["unsupported checkpoint format '.ckpt'", ".safetensors"],
    ),
    "another_architecture": (
        "w.safetensors",
        lambda p, _t: save_file(nn.Linear(3, 4).state_dict(), p),
        ["does not fit Sequential", "missing keys 0.weight", "must build the architecture"],
    ),
    "wider_layer": (
        "w.safetensors",
        lambda p, _t: save_file(
            nn.Sequential(
                nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 2, 1)
            ).state_dict(),
            p,
        ),
        ["shape mismatch", "0.weight saved [8, 3, 3, 3], model [4, 3, 3, 3]"],
    ),
    "missing_keys": (
        "w.safetensors",
        lambda p, _t: save_file({"0.weight": tiny().state_dict()["0.weight"]}, p),
        ["missing keys 0.bias"],
    ),
    "int8_weights_for_float_model": (
        "w.safetensors",
        lambda p, _t: save_file(floats(lambda v: v.to(torch.int8)), p),
        ["is torch.int8, the model expects torch.float32", "dequantize"],
    ),
    "nan_weights": (
        "w.safetensors",
        lambda p, _t: save_file(floats(lambda v: torch.full_like(v, float("nan"))), p),
        ["holds NaN values", "diverged"],
    ),
}


@pytest.mark.parametrize("case", sorted(USER_CASES))
def test_exception_bad_user_checkpoint(case: str, tmp_path: Path) -> None:
    name, write, expect = USER_CASES[case]
    path = tmp_path / name
    write(path, tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_user_weights(tiny(), path)
    text = str(info.value)
    assert "\n" not in text and info.value.hint
    assert text.startswith(f"{path}: ")
    for part in expect:
        assert part in text, f"{part!r} not in {text!r}"


def test_half_precision_checkpoint_still_loads(tmp_path: Path) -> None:
    save_file(floats(lambda v: v.half()), tmp_path / "half.safetensors")
    model = load_user_weights(tiny(), tmp_path / "half.safetensors")
    assert model[0].weight.dtype == torch.float32


HARNESS_CASES: dict[str, tuple[str, Callable[[Path], object], list[str]]] = {
    "weights_truncated": (
        WEIGHTS_FILE,
        lambda d: (d / WEIGHTS_FILE).write_bytes((d / WEIGHTS_FILE).read_bytes()[:100]),
        ["corrupt or truncated safetensors", "--harness-rebuild"],
    ),
    "structure_not_json": (
        STRUCTURE_FILE,
        lambda d: (d / STRUCTURE_FILE).write_text('{"format": 1,'),
        ["corrupt checkpoint structure", "--harness-rebuild"],
    ),
    "structure_missing": (
        STRUCTURE_FILE,
        lambda d: (d / STRUCTURE_FILE).unlink(),
        ["checkpoint structure is missing", "--harness-rebuild"],
    ),
    "weights_of_another_architecture": (
        WEIGHTS_FILE,
        lambda d: save_file(nn.Linear(3, 4).state_dict(), d / WEIGHTS_FILE),
        ["another architecture", "must build the architecture"],
    ),
}


@pytest.mark.parametrize("case", sorted(HARNESS_CASES))
def test_exception_bad_harness_checkpoint(case: str, tmp_path: Path) -> None:
    good = tmp_path / "good"
    save_harness_checkpoint(tiny(), good, meta={})
    load_checkpoint(tiny, good)  # the untouched checkpoint loads
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    name, mutate, expect = HARNESS_CASES[case]
    mutate(bad)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tiny, bad)
    text = str(info.value)
    assert "\n" not in text and info.value.hint
    assert text.startswith(f"{bad / name}: ")
    for part in expect:
        assert part in text, f"{part!r} not in {text!r}"

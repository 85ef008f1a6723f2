"""Checkpoints without pickle: safetensors + structure.json round trips and clear failures."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models import resnet18

from robustness_harness.compress import CompressContext, finalize_pruning
from robustness_harness.compress.prune import (
    GlobalMagnitudeParams,
    L1FilterParams,
    global_magnitude,
    l1_filter,
)
from robustness_harness.compress.quantize import QuantizeParams, ptq_int8
from robustness_harness.compress.structure import structure_of
from robustness_harness.errors import CheckpointError
from robustness_harness.store.checkpoint import (
    STRUCTURE_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    load_user_weights,
    save_checkpoint,
)
from robustness_harness_models.toydrive import build_toydrive_fcos
from robustness_harness_models.toysigns import build_toysigns_cnn
from tests.unit import compress_helpers as h

_one_thread = h.one_thread  # autouse: one torch thread per test


def _ctx() -> CompressContext:
    return CompressContext(example_inputs=torch.rand(2, 3, 128, 128), progress=lambda _: None)


def _dense() -> nn.Module:
    return build_toydrive_fcos()


def _magnitude() -> nn.Module:
    return global_magnitude(_dense(), GlobalMagnitudeParams(sparsity=0.8), _ctx())


def _structured() -> nn.Module:
    return l1_filter(_dense(), L1FilterParams(sparsity=0.5), _ctx())


VARIANTS: dict[str, Callable[[], nn.Module]] = {
    "dense": _dense,
    "global_magnitude": _magnitude,
    "l1_filter": _structured,
}


def _outputs(model: nn.Module, images: torch.Tensor) -> tuple[dict, list[dict]]:
    """Raw head outputs and post-processed detections, in eval mode."""
    model.eval()
    with torch.no_grad():
        normalized = (images - 0.45) / 0.25
        raw = model.head(list(model.backbone(normalized).values()))
        return raw, model(list(images))


def _assert_identical(a: tuple[dict, list[dict]], b: tuple[dict, list[dict]]) -> None:
    (raw_a, det_a), (raw_b, det_b) = a, b
    assert raw_a.keys() == raw_b.keys()
    assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)
    for x, y in zip(det_a, det_b, strict=True):
        assert x.keys() == y.keys()
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert det_a[0]["boxes"].shape[0] > 0  # a comparison of empty outputs would prove nothing


@pytest.fixture
def saved_fcos(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    save_checkpoint(_structured(), tmp_path / "ckpt", meta={"variant": "structured-50"})
    return tmp_path / "ckpt"


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_round_trip_is_bit_identical(variant: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = finalize_pruning(VARIANTS[variant]()).eval()
    images = torch.rand(2, 3, 128, 128)
    expected = _outputs(model, images)
    save_checkpoint(model, tmp_path, meta={"variant": variant})
    assert {p.name for p in tmp_path.iterdir()} == {WEIGHTS_FILE, STRUCTURE_FILE}
    torch.manual_seed(123)  # the fresh base model gets different random weights
    loaded = load_checkpoint(build_toydrive_fcos, tmp_path)
    _assert_identical(_outputs(loaded, images), expected)
    assert structure_of(loaded) == structure_of(model)


def test_structured_checkpoint_needs_the_structure(saved_fcos: Path) -> None:
    weights = load_file(str(saved_fcos / WEIGHTS_FILE))
    with pytest.raises(RuntimeError, match="size mismatch"):
        build_toydrive_fcos().load_state_dict(weights)


def test_unfinalized_masks_are_folded_on_save(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _magnitude().eval()
    images = torch.rand(1, 3, 128, 128)
    expected = _outputs(model, images)
    save_checkpoint(model, tmp_path, meta={})
    loaded = load_checkpoint(build_toydrive_fcos, tmp_path)
    assert not any(k.endswith(("_orig", "_mask")) for k in loaded.state_dict())
    _assert_identical(_outputs(loaded, images), expected)


class _Tied(nn.Module):
    """Two layers sharing one weight, and a non-contiguous parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.c = nn.Parameter(torch.randn(3, 5).t())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.c.sum()


def test_shared_and_non_contiguous_tensors_are_saved(tmp_path: Path) -> None:
    model = _Tied()
    save_checkpoint(model, tmp_path, meta={})
    loaded = load_checkpoint(_Tied, tmp_path)
    x = torch.randn(2, 4)
    assert torch.equal(loaded(x), model(x))


# -- failures ----------------------------------------------------------------------------------


def test_truncated_weights_are_a_checkpoint_error(saved_fcos: Path) -> None:
    weights = saved_fcos / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_toydrive_fcos, saved_fcos)
    assert str(weights) in str(err.value)
    assert "--harness-rebuild" in str(err.value)


def test_flipped_header_bytes_are_a_checkpoint_error(saved_fcos: Path) -> None:
    weights = saved_fcos / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[8:16] = bytes(b ^ 0xFF for b in data[8:16])
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt or truncated") as err:
        load_checkpoint(build_toydrive_fcos, saved_fcos)
    assert err.value.hint == "delete the cache entry or run with --harness-rebuild"


@pytest.mark.parametrize("content", [None, "{not json", "[]"])
def test_missing_or_corrupt_structure(saved_fcos: Path, content: str | None) -> None:
    structure = saved_fcos / STRUCTURE_FILE
    if content is None:
        structure.unlink()
    else:
        structure.write_text(content)
    with pytest.raises(CheckpointError, match="structure"):
        load_checkpoint(build_toydrive_fcos, saved_fcos)


def test_checkpoint_of_another_architecture(saved_fcos: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(lambda: resnet18(weights=None, num_classes=10), saved_fcos)
    message = str(err.value)
    assert "another architecture" in message
    assert "FCOS" in message and "ResNet" in message
    assert "model:" in (err.value.hint or "")


def test_module_type_mismatch(saved_fcos: Path) -> None:
    structure_file = saved_fcos / STRUCTURE_FILE
    structure = json.loads(structure_file.read_text())
    structure["base"]["backbone.stem.0"]["type"] = "Linear"
    structure_file.write_text(json.dumps(structure))
    with pytest.raises(
        CheckpointError, match=r"module 'backbone\.stem\.0' is Linear in the checkpoint but Conv2d"
    ):
        load_checkpoint(build_toydrive_fcos, saved_fcos)


def test_other_num_classes_names_the_layer(saved_fcos: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(lambda: build_toydrive_fcos(num_classes=4), saved_fcos)
    assert (
        "another architecture: module 'head.classification_head.cls_logits' has out_channels 7 "
        "in the checkpoint but 4 here" in str(err.value)
    )


def test_weights_that_do_not_fit_the_structure(saved_fcos: Path) -> None:
    structure_file = saved_fcos / STRUCTURE_FILE
    structure = json.loads(structure_file.read_text())
    structure["modules"]["backbone.stem.0"]["out_channels"] = 12
    structure_file.write_text(json.dumps(structure))
    with pytest.raises(CheckpointError, match=r"shape mismatch backbone.stem.0.weight saved \[8,"):
        load_checkpoint(build_toydrive_fcos, saved_fcos)


def test_dense_checkpoint_into_a_resized_base(tmp_path: Path) -> None:
    save_checkpoint(build_toydrive_fcos(), tmp_path, meta={})
    with pytest.raises(CheckpointError, match="has out_channels 7 in the checkpoint but 3"):
        load_checkpoint(lambda: build_toydrive_fcos(num_classes=3), tmp_path)


def test_reloaded_structured_model_keeps_its_base(saved_fcos: Path, tmp_path: Path) -> None:
    loaded = load_checkpoint(build_toydrive_fcos, saved_fcos)
    save_checkpoint(loaded, tmp_path / "again", meta={})
    again = json.loads((tmp_path / "again" / STRUCTURE_FILE).read_text())
    assert again == json.loads((saved_fcos / STRUCTURE_FILE).read_text())
    load_checkpoint(build_toydrive_fcos, tmp_path / "again")


# -- quantized checkpoints -----------------------------------------------------------------------


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return build_toysigns_cnn(widths=(8, 16, 32))


@pytest.fixture
def saved_int8(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    ctx = CompressContext(example_inputs=torch.rand(8, 3, 32, 32), progress=lambda _: None)
    quantized = ptq_int8(_small_cnn().eval(), QuantizeParams(calibration_images=8), ctx)
    save_checkpoint(quantized, tmp_path / "int8", meta={"variant": "int8"})
    return tmp_path / "int8"


def test_quantized_checkpoint_holds_int_tensors(saved_int8: Path) -> None:
    tensors = load_file(str(saved_int8 / WEIGHTS_FILE))
    int8 = [k for k, v in tensors.items() if v.dtype == torch.int8]
    assert len(int8) == 4  # three convs and the linear layer
    assert not [k for k, v in tensors.items() if v.is_floating_point() and k.endswith("weight")]
    structure = json.loads((saved_int8 / STRUCTURE_FILE).read_text())
    assert structure["quantization"]["method"] == "ptq_int8"
    assert structure["modules"]["1.0"]["out_channels"] == 8  # the float structure


def test_quantized_checkpoint_of_another_architecture(saved_int8: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(lambda: build_toysigns_cnn(widths=(16, 16, 32)), saved_int8)
    assert "module '1.0' has out_channels 8 in the checkpoint but 16 here" in str(err.value)
    assert str(saved_int8 / WEIGHTS_FILE) in str(err.value)


def _drop_first_entry(record: dict) -> None:
    entries = record["layout"]["entries"]
    del entries[next(iter(entries))]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda q: q.pop("kind"), "corrupt quantization record"),
        (lambda q: q.update(weight_bits=3), "corrupt quantization record"),
        (lambda q: q.update(layout={}), "no readable layout"),
        (_drop_first_entry, "does not fit the rebuilt model: missing key"),
        (lambda q: q["layout"]["entries"]["graph.1.0.weight"].update(shape=[9]), "corrupt"),
    ],
)
def test_corrupt_quantization_record(
    saved_int8: Path, edit: Callable[[dict], None], message: str
) -> None:
    structure_file = saved_int8 / STRUCTURE_FILE
    structure = json.loads(structure_file.read_text())
    edit(structure["quantization"])
    structure_file.write_text(json.dumps(structure))
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(_small_cnn, saved_int8)
    assert "\n" not in str(err.value) and err.value.hint


def test_quantized_checkpoint_lacking_a_tensor(saved_int8: Path) -> None:
    tensors = load_file(str(saved_int8 / WEIGHTS_FILE))
    del tensors["graph.1.0.weight:scales"]
    save_file(tensors, str(saved_int8 / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match=r"lacks tensor 'graph\.1\.0\.weight:scales'"):
        load_checkpoint(_small_cnn, saved_int8)


# -- user weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "model", "module_prefix"])
def test_user_pt_weights(wrap: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_toydrive_fcos()
    state = source.state_dict()
    payload: object = {
        "raw": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    torch.save(payload, tmp_path / "w.pt")
    loaded = load_user_weights(build_toydrive_fcos(), tmp_path / "w.pt")
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())


def test_user_safetensors_weights(tmp_path: Path) -> None:
    source = build_toydrive_fcos()
    save_file(
        {k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "w.safetensors"
    )
    loaded = load_user_weights(build_toydrive_fcos(), tmp_path / "w.safetensors")
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in loaded.state_dict().items())


class _Payload:
    """Unpickling this would create a file: weights_only loading must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.touch, (self.marker,))


def test_pickled_objects_are_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    torch.save({"state_dict": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused to unpickle") as err:
        load_user_weights(build_toydrive_fcos(), tmp_path / "evil.pt")
    assert not marker.exists()
    assert "state_dict()" in (err.value.hint or "")


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_user_weights(nn.Linear(2, 2), tmp_path / "module.pth")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("w.ckpt", b"x", "unsupported checkpoint format"),
        ("w.pt", b"not a zip", "cannot read the checkpoint"),
        ("w.safetensors", b"\x00" * 3, "corrupt or truncated"),
        ("missing.pt", None, "missing"),
    ],
)
def test_user_weights_bad_files(name: str, content: bytes | None, message: str, tmp_path: Path):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as err:
        load_user_weights(nn.Linear(2, 2), path)
    assert str(path) in str(err.value)


def test_user_weights_of_another_architecture(tmp_path: Path) -> None:
    torch.save(resnet18(weights=None, num_classes=10).state_dict(), tmp_path / "r.pt")
    with pytest.raises(CheckpointError, match="does not fit FCOS: missing keys") as err:
        load_user_weights(build_toydrive_fcos(), tmp_path / "r.pt")
    assert "(+" in str(err.value)  # long key lists are shortened


def test_not_a_state_dict(tmp_path: Path) -> None:
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_user_weights(nn.Linear(2, 2), tmp_path / "list.pt")


def test_the_weights_file_is_the_same_whatever_the_build_took(tmp_path: Path) -> None:
    from robustness_harness.run.session import weights_meta

    model = nn.Linear(3, 2)
    meta = {"variant": "v", "seed": 0, "steps": ["prune"]}
    for name, seconds in (("fast", 1.5), ("slow", 1234.56789)):
        save_checkpoint(
            model, tmp_path / name, meta=weights_meta({**meta, "build_seconds": seconds})
        )
    fast, slow = ((tmp_path / n / WEIGHTS_FILE).read_bytes() for n in ("fast", "slow"))
    assert fast == slow

"""Post-training quantization: accuracy vs float, save/load, size, combos, schema, session.

Tolerances (relative L2 error of the quantized outputs vs the float ones): the seeded
random-init toysigns CNN on toysigns images, 5 % (int8) and 20 % (int4); the shipped
trained toydrive-fcos head outputs on toydrive images, 10 % (int8, measured 2-7 %) and
30 % (int4, measured 7-18 %), with each image's top score within 0.05. Measured once on
the full val sets: toysigns-cnn accuracy 0.975 → int8 0.974, int4 0.963; toydrive-fcos
mAP 0.541 → int8 0.539, int4 0.528.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import robustness_harness.run.session as session_module
from robustness_harness.compress import CompressContext
from robustness_harness.compress.prune import (
    GlobalMagnitudeParams,
    L1FilterParams,
    global_magnitude,
    l1_filter,
)
from robustness_harness.compress.qstate import pack_int4, unpack_int4
from robustness_harness.compress.quantize import (
    QuantizedPart,
    QuantizeParams,
    int4_weight,
    parameter_counts,
    ptq_int8,
    quantization_record,
    quantized_weights,
    split_quantize_steps,
)
from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.data.toydrive import generate_toydrive
from robustness_harness.errors import HarnessError
from robustness_harness.metrics.context import ModelContext
from robustness_harness.metrics.size import size_measures
from robustness_harness.run.session import HarnessOptions, HarnessSession
from robustness_harness.store.checkpoint import (
    STRUCTURE_FILE,
    WEIGHTS_FILE,
    load_user_weights,
    save_checkpoint,
)
from robustness_harness.suite import CompressStep
from robustness_harness.suite.loader import parse_suite
from robustness_harness.suite.problems import SpecProblem
from robustness_harness.suite.schema import parse_step
from robustness_harness_models.toydrive import WEIGHTS_FILE as TRAINED_FCOS
from robustness_harness_models.toydrive import build_toydrive_fcos
from tests.unit.compress_helpers import assert_round_trip, cnn, images, signs

METHODS = {"ptq_int8": ptq_int8, "int4_weight": int4_weight}


@pytest.fixture(scope="module")
def sign_data(tmp_path_factory: pytest.TempPathFactory) -> ClassificationData:
    return signs(tmp_path_factory.mktemp("signs"))


@pytest.fixture(scope="module")
def drive_images(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """12 toydrive images (B, 3, 128, 128) in [0, 1]: 8 to calibrate, 4 to compare."""
    paths = generate_toydrive(tmp_path_factory.mktemp("drive"), n_train=12, n_val=1)
    data = CocoDetectionData.load(paths["images"], paths["train"])
    arrays = [torch.from_numpy(data.load_image(i)) for i in data.image_ids]
    return torch.stack(arrays).permute(0, 3, 1, 2).float() / 255


def _ctx(example: torch.Tensor) -> CompressContext:
    return CompressContext(example_inputs=example, progress=lambda _line: None)


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


def _head_outputs(model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """FCOS raw head outputs (the quantized tensor part) on a batch of images."""
    with torch.no_grad():
        tensors = model.transform(list(batch))[0].tensors
        return model.head(list(model.backbone(tensors).values()))


# -- accuracy against the float model ----------------------------------------------------------


@pytest.mark.parametrize(("method", "tolerance"), [("ptq_int8", 0.05), ("int4_weight", 0.2)])
def test_classifier_outputs_close_to_float(
    sign_data: ClassificationData, method: str, tolerance: float
) -> None:
    model = cnn().eval()
    x = images(sign_data, 96)
    quantized = METHODS[method](model, QuantizeParams(calibration_images=64), _ctx(x[:64]))
    with torch.no_grad():
        error = _relative_error(quantized(x[64:]), model(x[64:]))
    assert 0 < error < tolerance
    assert isinstance(quantized, QuantizedPart)
    assert quantization_record(quantized).method == method  # type: ignore[union-attr]


def test_int4_is_coarser_than_int8(sign_data: ClassificationData) -> None:
    model = cnn().eval()
    x = images(sign_data, 64)
    errors = {}
    for name, fn in METHODS.items():
        quantized = fn(model, QuantizeParams(calibration_images=32), _ctx(x[:32]))
        with torch.no_grad():
            errors[name] = _relative_error(quantized(x[32:]), model(x[32:]))
        ranges = [int(w.int_repr().abs().max()) for w, _ in quantized_weights(quantized)]
        if name == "ptq_int8":
            assert max(ranges) == 127
        else:  # the first conv and the logits layer keep 8-bit weights
            assert quantization_record(quantized).int8_layers == ("1.0", "8")  # type: ignore[union-attr]
            assert ranges == [127, 7, 7, 127]
    assert errors["ptq_int8"] < errors["int4_weight"]


@pytest.mark.parametrize(("method", "tolerance"), [("ptq_int8", 0.1), ("int4_weight", 0.3)])
def test_detector_tensor_part_close_to_float(
    drive_images: torch.Tensor, method: str, tolerance: float
) -> None:
    model = load_user_weights(build_toydrive_fcos(), TRAINED_FCOS).eval()
    quantized = METHODS[method](model, QuantizeParams(calibration_images=8), _ctx(drive_images[:8]))
    assert isinstance(quantized.backbone, QuantizedPart)
    assert isinstance(quantized.head, QuantizedPart)
    expected = _head_outputs(model, drive_images[8:])
    got = _head_outputs(quantized, drive_images[8:])
    assert expected.keys() == got.keys()
    for name in expected:
        assert 0 < _relative_error(got[name], expected[name]) < tolerance, name
    with torch.no_grad():  # the float post-processing runs on the quantized features
        detections = quantized(list(drive_images[8:]))
        reference = model(list(drive_images[8:]))
    for ours, theirs in zip(detections, reference, strict=True):
        assert abs(float(ours["scores"][0] - theirs["scores"][0])) < 0.05


def test_float_model_is_left_unchanged(sign_data: ClassificationData) -> None:
    model = cnn().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ptq_int8(model, QuantizeParams(calibration_images=8), _ctx(images(sign_data, 8)))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_calibration_uses_the_context_images(sign_data: ClassificationData) -> None:
    model = cnn().eval()
    asked: list[int] = []
    lines: list[str] = []

    def supply(n: int) -> torch.Tensor:
        asked.append(n)
        return images(sign_data, 10)

    ctx = CompressContext(
        example_inputs=images(sign_data, 2),
        progress=lines.append,
        extras={"calibration_images": supply},
    )
    ptq_int8(model, QuantizeParams(calibration_images=16), ctx)
    assert asked == [16]
    assert "calibrated on 10 images (only 10 available)" in lines[-1]


# -- save and load -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(METHODS))
def test_classifier_round_trip_is_identical(
    sign_data: ClassificationData, method: str, tmp_path: Path
) -> None:
    x = images(sign_data, 16)
    quantized = METHODS[method](cnn().eval(), QuantizeParams(calibration_images=16), _ctx(x))
    loaded = assert_round_trip(quantized, lambda: cnn(seed=1), x, tmp_path)
    assert quantization_record(loaded) == quantization_record(quantized)
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert files == {WEIGHTS_FILE, STRUCTURE_FILE}  # no pickle anywhere
    record = json.loads((tmp_path / "ckpt" / STRUCTURE_FILE).read_text())["quantization"]
    assert record["method"] == method


@pytest.mark.parametrize("method", list(METHODS))
def test_detector_round_trip_is_identical(
    drive_images: torch.Tensor, method: str, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    quantized = METHODS[method](
        build_toydrive_fcos().eval(), QuantizeParams(calibration_images=4), _ctx(drive_images[:4])
    )
    loaded = assert_round_trip(quantized, build_toydrive_fcos, list(drive_images[8:10]), tmp_path)
    expected = _head_outputs(quantized, drive_images[8:])
    got = _head_outputs(loaded, drive_images[8:])
    assert all(torch.equal(expected[k], got[k]) for k in expected)


# -- size --------------------------------------------------------------------------------------


def _size(model: nn.Module, data: ClassificationData) -> dict[str, Any]:
    ctx = ModelContext(model=model, data=data, device=torch.device("cpu"), task="classification")
    return size_measures(ctx)


def test_int8_is_a_quarter_of_float_on_disk_and_int4_smaller(
    sign_data: ClassificationData, tmp_path: Path
) -> None:
    model = cnn(widths=(32, 64, 128)).eval()
    x = images(sign_data, 16)
    dense = _size(model, sign_data)
    int8 = _size(ptq_int8(model, QuantizeParams(calibration_images=16), _ctx(x)), sign_data)
    int4 = _size(int4_weight(model, QuantizeParams(calibration_images=16), _ctx(x)), sign_data)
    assert 0.24 < int8["bytes"] / dense["bytes"] < 0.3
    assert int4["bytes"] < 0.6 * int8["bytes"]
    # Conv/Linear multiply-adds are the same in int8 (BatchNorm is folded, not counted)
    assert int8["flops"] == int4["flops"] == dense["flops"] > 0
    # BatchNorm folding drops its scales and shifts but keeps one bias per channel
    assert 0.97 * dense["params"] < int8["params"] < dense["params"]


def test_size_on_disk_matches_the_checkpoint(sign_data: ClassificationData, tmp_path: Path) -> None:
    x = images(sign_data, 8)
    quantized = ptq_int8(cnn().eval(), QuantizeParams(calibration_images=8), _ctx(x))
    save_checkpoint(quantized, tmp_path, meta={})
    ctx = ModelContext(
        model=quantized,
        data=sign_data,
        device=torch.device("cpu"),
        task="classification",
        checkpoint_dir=tmp_path,
    )
    assert size_measures(ctx)["bytes"] == (tmp_path / WEIGHTS_FILE).stat().st_size
    unsaved = _size(quantized, sign_data)["bytes"]  # the same tensors, without the meta header
    assert 0 < (tmp_path / WEIGHTS_FILE).stat().st_size - unsaved < 100


def test_quantized_part_stays_on_the_cpu(sign_data: ClassificationData) -> None:
    x = images(sign_data, 8)
    quantized = ptq_int8(cnn().eval(), QuantizeParams(calibration_images=8), _ctx(x))
    with torch.no_grad():
        expected = quantized(x)
        moved = quantized.to("meta").to(torch.float64)
        assert moved is quantized and torch.equal(moved(x), expected)


def test_pack_int4_round_trip() -> None:
    values = torch.tensor([[-8, 7, 0], [3, -1, 5], [-7, 2, 1]], dtype=torch.int8)
    packed = pack_int4(values)
    assert packed.dtype == torch.uint8 and packed.numel() == 5  # 9 values, 2 per byte
    assert torch.equal(unpack_int4(packed, [3, 3]), values)
    with pytest.raises(ValueError, match="4-bit"):
        pack_int4(torch.tensor([8], dtype=torch.int8))


# -- combinations with pruning -----------------------------------------------------------------


def test_prune_then_quantize_keeps_the_zeros(sign_data: ClassificationData, tmp_path: Path) -> None:
    x = images(sign_data, 16)
    pruned = global_magnitude(cnn().eval(), GlobalMagnitudeParams(sparsity=0.6), _ctx(x))
    quantized = ptq_int8(pruned, QuantizeParams(calibration_images=16), _ctx(x))
    _, _, sparsity = parameter_counts(quantized)
    assert 0.6 <= sparsity < 0.65  # pruned zeros stay zero; a few small weights round to 0
    assert_round_trip(quantized, cnn, x, tmp_path)


def test_structured_prune_then_quantize_round_trip(
    sign_data: ClassificationData, tmp_path: Path
) -> None:
    x = images(sign_data, 16)
    pruned = l1_filter(cnn().eval(), L1FilterParams(sparsity=0.5), _ctx(x))
    quantized = int4_weight(pruned, QuantizeParams(calibration_images=16), _ctx(x))
    assert [w.shape[0] for w, _ in quantized_weights(quantized)][:3] == [4, 8, 16]
    assert_round_trip(quantized, cnn, x, tmp_path)


def test_a_model_is_quantized_once(sign_data: ClassificationData) -> None:
    x = images(sign_data, 8)
    quantized = ptq_int8(cnn().eval(), QuantizeParams(calibration_images=8), _ctx(x))
    with pytest.raises(HarnessError, match="already quantized"):
        int4_weight(quantized, QuantizeParams(calibration_images=8), _ctx(x))


def _step(kind: str, method: str, **params: Any) -> CompressStep:
    return CompressStep.model_validate({kind: {"method": method, **params}})


def test_quantize_step_must_come_last() -> None:
    prune = _step("prune", "global_magnitude", sparsity=0.5)
    quant = _step("quantize", "ptq_int8")
    assert split_quantize_steps([prune, quant]) == ([prune], [quant])
    assert split_quantize_steps([prune]) == ([prune], [])
    with pytest.raises(HarnessError, match="step 1 quantizes, but step 2 follows") as info:
        split_quantize_steps([quant, prune], file="s.yaml", field="variants.v.compress")
    assert "variants.v.compress" in str(info.value) and "last" in str(info.value)


# -- schema ------------------------------------------------------------------------------------


BAD_STEP_SUITE = """
suite: q
model: {{name: toysigns-cnn}}
data: {{name: toysigns, split: val}}
baseline: dense
variants:
  dense: {{}}
  int8:
    compress: [{{quantize: {step}}}]
checks:
  accuracy: {{metric: accuracy, drop_max: 0.01}}
"""


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            "{method: ptq_int8, calibration_images: 0}",
            "variants.int8.compress[0].quantize.calibration_images: must be >= 1, got 0",
        ),
        (
            "{method: int4_weight, calibration_images: true}",
            "quantize.calibration_images: expected a whole number",
        ),
        (
            "{method: ptq_int8, calibration: 64}",
            "unknown key 'calibration' (fix: did you mean 'calibration_images'",
        ),
        ("{method: ptq_int9}", "method 'ptq_int9' (fix: did you mean 'ptq_int8'"),
    ],
)
def test_schema_rejects_bad_quantize_steps(step: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as info:
        parse_suite(BAD_STEP_SUITE.format(step=step), tmp_path / "q.yaml")
    text = str(info.value)
    assert message in text and "q.yaml:9" in text and "\n" not in text


def test_schema_rejects_a_quantize_method_under_prune() -> None:
    with pytest.raises(SpecProblem, match="is a quantize method") as info:
        parse_step({"prune": {"method": "ptq_int8"}})
    assert info.value.hint == "move it under 'quantize:'"


def test_schema_defaults() -> None:
    step = _step("quantize", "int4_weight")
    assert step.params.calibration_images == 64  # type: ignore[attr-defined]


# -- through the session: cached float model, attacks, CPU --------------------------------------


SUITE = """
suite: q
model: {{factory: "robustness_harness_models.toysigns:build_toysigns_cnn",
        kwargs: {{widths: [8, 16, 32]}}, checkpoint: {weights}, task: classification}}
data: {{name: toysigns, params: {{n_train: 64, n_val: 24}}, split: val}}
seed: 0
baseline: dense
variants:
  dense: {{}}
  pruned:
    compress: [{{prune: {{method: global_magnitude, sparsity: 0.5}}}}]
  pruned-int8:
    compress:
      - prune: {{method: global_magnitude, sparsity: 0.5}}
      - quantize: {{method: ptq_int8, calibration_images: 16}}
  int8:
    compress: [{{quantize: {{method: ptq_int8, calibration_images: 32}}}}]
  backwards:
    compress:
      - quantize: {{method: ptq_int8}}
      - prune: {{method: global_magnitude, sparsity: 0.5}}
checks:
  pgd: {{metric: pgd_accuracy, eps: 2/255, alpha: 1/255, steps: 2, drop_max: 1.0}}
  saliency: {{metric: saliency_change, max: 1.0}}
  bytes: {{metric: size, measure: bytes, ratio_max: 0.5}}
"""


@pytest.mark.slow
def test_session_quantized_variant_end_to_end(tmp_path: Path) -> None:
    save_file(cnn().state_dict(), str(tmp_path / "w.safetensors"))
    (tmp_path / "suite.yaml").write_text(SUITE.format(weights="w.safetensors"))
    options = HarnessOptions(cache_dir=str(tmp_path / "cache"), device="cpu")
    session = HarnessSession(options, progress=lambda _line: None)
    suite = session.suite(tmp_path / "suite.yaml")
    # the float model quantized is the pruned variant: one cache entry for both
    source = session.float_variant(suite, "pruned-int8")
    assert source is not None
    assert session.checkpoint_key(suite, source) == session.checkpoint_key(suite, "pruned")
    assert session.float_variant(suite, "pruned") is None

    pgd = session.run_check(suite, "pruned-int8", "pgd")
    assert pgd.extra["note"] == "attacked through the fake-quant twin"
    assert session.run_check(suite, "pruned", "pgd").extra["note"] == ""
    size = session.run_check(suite, "pruned-int8", "bytes")
    # a tiny model: per-channel scales and headers weigh more than in real ones (~0.27)
    assert size.passed and size.value / size.baseline_value < 0.4  # type: ignore[operator]
    assert quantization_record(session.model(suite, "pruned-int8")) is not None
    source = session.float_model(suite, "pruned-int8")
    assert source is not None and quantization_record(source) is None
    assert parameter_counts(source)[2] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(HarnessError, match="step 1 quantizes") as info:
        session.model(suite, "backwards")
    assert "variants.backwards.compress" in str(info.value)


def _session(
    tmp_path: Path, progress: Callable[[str], None] = lambda _line: None
) -> HarnessSession:
    options = HarnessOptions(cache_dir=str(tmp_path / "cache"), device="cpu")
    return HarnessSession(options, progress=progress)


@pytest.mark.slow
def test_int8_only_variant_is_differentiated_through_its_fake_quant_twin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_file(cnn().state_dict(), str(tmp_path / "w.safetensors"))
    (tmp_path / "suite.yaml").write_text(SUITE.format(weights="w.safetensors"))
    session = _session(tmp_path)
    suite = session.suite(tmp_path / "suite.yaml")
    saliency = session.run_check(suite, "int8", "saliency")
    # the defect: through the dense model as "twin" this was exactly 0.000
    assert saliency.value > 0.0  # type: ignore[operator]
    assert saliency.extra["note"] == "saliency of the candidate through its fake-quant twin"
    assert session.run_check(suite, "int8", "pgd").extra["note"] == (
        "attacked through the fake-quant twin"
    )
    assert session.twin(suite, "dense") is None
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        first = session.twin(suite, "int8")(x)  # type: ignore[misc]
    # a new session rebuilds the twin from the cached float and int8 checkpoints
    lines: list[str] = []
    again = _session(tmp_path, lines.append)
    rebuilt = again.twin(again.suite(tmp_path / "suite.yaml"), "int8")
    with torch.no_grad():
        assert rebuilt is not None and torch.equal(rebuilt(x), first)
    assert not any(line.startswith("built") for line in lines)
    # quantized checkpoints (which hold the twin's activation qparams) change key with
    # their format; float ones do not
    keys = {v: session.checkpoint_key(suite, v) for v in ("dense", "int8")}
    monkeypatch.setattr(session_module, "CHECKPOINT_FORMAT", "another")
    changed = _session(tmp_path)
    suite = changed.suite(tmp_path / "suite.yaml")
    assert changed.checkpoint_key(suite, "dense") == keys["dense"]
    assert changed.checkpoint_key(suite, "int8") != keys["int8"]

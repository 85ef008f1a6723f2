"""The fake-quant twin of a quantized model: what attacks and saliency differentiate.

Issue 17 part 5: the twin used to be the float model before the quantize step, so an
int8-only variant's saliency change against its dense baseline was exactly 0 (its
twin *was* the dense model). The twin now fake-quantizes weights and activations with
the real model's qparams: its logits follow the quantized model's, its gradients differ
from the float model's, and it is rebuilt from the two cached checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import tests.unit.compress_helpers as h
from robustness_harness.compress import CompressContext
from robustness_harness.compress.quantize import (
    QuantizeParams,
    fake_quant_twin,
    int4_weight,
    ptq_int8,
    quantization_record,
)
from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.data.toydrive import generate_toydrive
from robustness_harness.errors import CheckpointError
from robustness_harness.store.checkpoint import load_checkpoint, load_user_weights, save_checkpoint
from robustness_harness_models.toydrive import WEIGHTS_FILE as TRAINED_FCOS
from robustness_harness_models.toydrive import build_toydrive_fcos
from tests.unit.compress_helpers import cnn, images

METHODS = {"ptq_int8": ptq_int8, "int4_weight": int4_weight}
sign_data = h.signs_data


def _ctx(example: torch.Tensor) -> CompressContext:
    return CompressContext(example_inputs=example, progress=lambda _line: None)


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


def _input_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """∂ logit_y / ∂ x summed over the batch (what saliency maps are made of)."""
    x = x.clone().requires_grad_(True)
    model(x).gather(1, labels[:, None]).sum().backward()
    assert x.grad is not None
    return x.grad


@pytest.mark.parametrize("method", ["ptq_int8", "int4_weight"])
def test_twin_follows_the_quantized_classifier_not_the_float_one(
    sign_data: ClassificationData, method: str
) -> None:
    model = cnn().eval()
    x = images(sign_data, 96)
    quantized = METHODS[method](model, QuantizeParams(calibration_images=64), _ctx(x[:64]))
    twin = fake_quant_twin(model, quantized)
    test = x[64:]
    with torch.no_grad():
        real, fake, plain = quantized(test), twin(test), model(test)
    # measured: int8 twin 0.4 % from the int8 logits, float 1.3 %; int4 0.4 % vs 2.8 %
    assert _relative(fake, real) < 0.5 * _relative(plain, real)
    assert not torch.equal(fake, plain)
    agree = float((fake.argmax(1) == real.argmax(1)).float().mean())
    assert agree >= float((plain.argmax(1) == real.argmax(1)).float().mean()) and agree > 0.95
    # gradients pass straight through the rounding, and are not the float model's
    labels = real.argmax(1)
    through_twin = _input_gradient(twin, test, labels)
    through_float = _input_gradient(model, test, labels)
    assert float(through_twin.abs().sum()) > 0
    assert _relative(through_twin, through_float) > 0.1
    assert quantization_record(twin) is None
    ours = {p.data_ptr() for p in model.parameters()}  # a copy: the float model stays as is
    assert ours.isdisjoint(p.data_ptr() for p in twin.parameters())


def test_twin_rebuilds_from_the_two_checkpoints(
    sign_data: ClassificationData, tmp_path: Path
) -> None:
    model = cnn().eval()
    x = images(sign_data, 40)
    quantized = ptq_int8(model, QuantizeParams(calibration_images=32), _ctx(x[:32]))
    save_checkpoint(model, tmp_path / "float", meta={})
    save_checkpoint(quantized, tmp_path / "int8", meta={})
    loaded = fake_quant_twin(
        load_checkpoint(cnn, tmp_path / "float"), load_checkpoint(cnn, tmp_path / "int8")
    )
    with torch.no_grad():
        assert torch.equal(loaded(x[32:]), fake_quant_twin(model, quantized)(x[32:]))


def test_twin_refuses_another_float_model(sign_data: ClassificationData) -> None:
    x = images(sign_data, 16)
    quantized = ptq_int8(cnn().eval(), QuantizeParams(calibration_images=16), _ctx(x))
    with pytest.raises(CheckpointError, match="does not fit the quantized model") as info:
        fake_quant_twin(cnn(widths=(8, 16, 16)), quantized)
    assert "\n" not in str(info.value) and info.value.hint


def test_detector_twin_follows_the_quantized_backbone_and_head(tmp_path: Path) -> None:
    paths = generate_toydrive(tmp_path / "drive", n_train=6, n_val=1)
    data = CocoDetectionData.load(paths["images"], paths["train"])
    batch = torch.stack([torch.from_numpy(data.load_image(i)) for i in data.image_ids])
    batch = batch.permute(0, 3, 1, 2).float() / 255
    model = load_user_weights(build_toydrive_fcos(), TRAINED_FCOS).eval()
    quantized = ptq_int8(model, QuantizeParams(calibration_images=4), _ctx(batch[:4]))
    twin = fake_quant_twin(model, quantized)

    def head(m: nn.Module, images: torch.Tensor) -> torch.Tensor:
        tensors = m.transform(list(images))[0].tensors
        return m.head(list(m.backbone(tensors).values()))["cls_logits"]

    with torch.no_grad():
        real, fake, plain = (head(m, batch[4:]) for m in (quantized, twin, model))
    # measured: twin 1.2 % from the int8 class logits, float 2.2 % (head alone on the same
    # features: 0.7 % vs 2.1 %)
    assert _relative(fake, real) < 0.7 * _relative(plain, real)
    image = batch[4:5].clone().requires_grad_(True)
    head(twin, image).sum().backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0

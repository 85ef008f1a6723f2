"""A quantized Faster R-CNN variant end to end through a suite (issue 17 part 5): the
session builds ``ptq_int8`` of torchvision's fasterrcnn_mobilenet_v3_large_320_fpn
(random init, the project's registered factory) calibrated on toydrive training images,
saves it, a fresh session reloads it from the cache without rebuilding, and gates on its
size, prediction flips and latency run on the quantized model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from robustness_harness.compress.quantize import QuantizedPart
from robustness_harness.data.builtin import toydrive_dataset
from robustness_harness.run.session import HarnessOptions, HarnessSession
from robustness_harness_models.torchvision_detectors import (
    fasterrcnn_mobilenet_v3_large_320_fpn,
    with_backbone_statistics,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("two_threads")]

SUITE = """
suite: rcnn-int8
model: {name: fasterrcnn_mobilenet_v3_large_320_fpn, checkpoint: weights.safetensors}
data: {name: toydrive, split: val, params: {n_train: 8, n_val: 4, image_size: 96}}
seed: 0
baseline: dense
variants:
  dense: {}
  int8:
    compress: [{quantize: {method: ptq_int8, calibration_images: 4}}]
checks:
  bytes: {metric: size, params: {measure: bytes}, ratio_max: 0.5}
  flips: {metric: flip_rate, max: 1.0}
  latency: {metric: latency_ms, params: {iters: 2, warmup: 1}, ratio_max: 10.0}
"""


def _session(where: Path, log: list[str]) -> HarnessSession:
    options = HarnessOptions(cache_dir=str(where / "cache"), device="cpu")
    return HarnessSession(options, progress=log.append)


def _weights(path: Path) -> None:
    """Random-init weights with backbone BatchNorm statistics of toydrive training images
    (at random init MobileNetV3's features vanish; see ``with_backbone_statistics``)."""
    torch.manual_seed(0)
    data = toydrive_dataset(path.parent / "data", n_train=8, n_val=4, image_size=96)["train"]
    model = fasterrcnn_mobilenet_v3_large_320_fpn(num_classes=data.label_space.num_classes)
    images = torch.stack(
        [torch.from_numpy(data.load_image(i)).permute(2, 0, 1) / 255 for i in data.image_ids[:4]]
    )
    save_file(with_backbone_statistics(model, images).state_dict(), str(path))


def test_quantized_faster_rcnn_variant_builds_reloads_and_gates(tmp_path: Path) -> None:
    (tmp_path / "rcnn.yaml").write_text(SUITE)
    _weights(tmp_path / "weights.safetensors")
    log: list[str] = []
    session = _session(tmp_path, log)
    suite = session.suite(tmp_path / "rcnn.yaml")
    model = session.model(suite, "int8")
    parts = [n for n, m in model.named_modules() if isinstance(m, QuantizedPart)]
    assert parts == ["backbone", "rpn.head", "roi_heads.box_head"]
    assert any("ptq_int8:" in line and "calibrated on 4 images" in line for line in log)
    outcomes = {name: session.run_check(suite, "int8", name) for name in suite.spec.checks}
    assert all(outcome.passed for outcome in outcomes.values()), outcomes
    assert outcomes["bytes"].value < 0.35 * outcomes["bytes"].baseline_value
    assert 0.0 <= outcomes["flips"].value <= 1.0
    assert outcomes["latency"].value > 0

    log.clear()
    fresh = _session(tmp_path, log)
    again = fresh.model(fresh.suite(tmp_path / "rcnn.yaml"), "int8")
    assert not any(line.startswith("built checkpoint") for line in log), log
    image = [torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        expected, got = model(image)[0], again(image)[0]
    torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=0, atol=0)

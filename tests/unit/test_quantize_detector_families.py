"""Static quantization of Faster R-CNN and SSDlite (issue 17 part 5; observed: ``ptq_int8:
torch.fx cannot trace FasterRCNN``): their traceable parts are quantized (``DETECTOR_PARTS``)
while the transform, anchors, RoI pooling, box decoding, the box predictor and NMS stay
float, and their checkpoints round-trip. The random-init models get backbone BatchNorm
statistics from random images first (``with_backbone_statistics``): MobileNetV3 features
vanish otherwise, and the histogram observers' search then takes ~0.6 s each (SSDlite
has 143) instead of milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision.models.detection as detection
from torch import nn
from torch.utils._pytree import tree_leaves

import robustness_harness.compress.quantize as quantize
from robustness_harness.compress import CompressContext
from robustness_harness.compress.quantize import (
    DETECTOR_PARTS,
    QuantizedPart,
    QuantizeParams,
    QuantRecord,
    ptq_int8,
    quantization_record,
)
from robustness_harness_models.torchvision_detectors import with_backbone_statistics
from tests.unit.compress_helpers import assert_round_trip

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("two_threads")]

FAMILIES: dict[str, Callable[..., nn.Module]] = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": detection.fasterrcnn_mobilenet_v3_large_320_fpn,
    "ssdlite320_mobilenet_v3_large": detection.ssdlite320_mobilenet_v3_large,
}
EXPECTED_PARTS = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": ["backbone", "rpn.head", "roi_heads.box_head"],
    "ssdlite320_mobilenet_v3_large": ["backbone", "head"],
}

#: Relative L2 error of a part's outputs from the float part's inputs, 2 calibration
#: images (measured: backbones 0.47-0.59, RPN head 0.12, SSDlite head 0.05, box head 0.02).
TOLERANCE = {"backbone": 0.8, "heads": 0.2}


def _build(name: str) -> Callable[[], nn.Module]:
    return lambda: FAMILIES[name](weights=None, weights_backbone=None, num_classes=3)


def _ctx(images: torch.Tensor) -> CompressContext:
    return CompressContext(example_inputs=images, progress=lambda _line: None)


def _flat(outputs: object) -> torch.Tensor:
    """A part's outputs (tensor, list, tuple or dict of them) as one flat tensor."""
    leaves = tree_leaves(outputs)
    return torch.cat([t.flatten() for t in leaves if isinstance(t, torch.Tensor)])


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_traceable_parts_are_quantized_and_the_checkpoint_round_trips(
    name: str, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    images = torch.rand(4, 3, 240, 320)
    model = with_backbone_statistics(_build(name)(), images)
    quantized = ptq_int8(model, QuantizeParams(calibration_images=2), _ctx(images[:2]))
    parts = [n for n, m in quantized.named_modules() if isinstance(m, QuantizedPart)]
    assert parts == EXPECTED_PARTS[name]
    record = quantization_record(quantized)
    assert record is not None and [path for path, _ in record.parts] == parts
    if name.startswith("fasterrcnn"):  # the box predictor and RoI pooling stay float
        assert isinstance(quantized.roi_heads.box_predictor.cls_score, nn.Linear)
    # each quantized part computes its float part's outputs from the same (float) inputs
    batch = model.transform(list(images[2:]))[0].tensors
    with torch.no_grad():
        features = list(model.backbone(batch).values())
        inputs = {"backbone": batch, "head": features, "rpn.head": features}
        inputs["roi_heads.box_head"] = torch.randn(8, features[0].shape[1], 7, 7)
        errors = {
            path: _relative_error(
                _flat(quantized.get_submodule(path)(inputs[path])),
                _flat(model.get_submodule(path)(inputs[path])),
            )
            for path in parts
        }
    # random-init MobileNetV3 backbones lose more than trained ones (trained FCOS: 2-7 %)
    assert errors.pop("backbone") < TOLERANCE["backbone"], name
    assert max(errors.values()) < TOLERANCE["heads"], errors
    loaded = assert_round_trip(quantized, _build(name), list(images[2:]), tmp_path)
    assert quantization_record(loaded) == record


def test_layers_kept_at_8_bits_are_named_within_their_part() -> None:
    """Under int4, a part taking the feature list names its modules ``head.*`` (its
    wrapper's); other parts drop their path. The first concatenates in float."""
    record = QuantRecord(
        method="int4_weight",
        weight_bits=4,
        kind="detector",
        example_shapes=(),
        float_structure={},
        float_shapes={},
        int8_layers=("backbone.body.0.0", "rpn.head.cls_logits", "roi_heads.box_predictor.cls"),
    )
    kept = {
        path: set(quantize._mapping(record, path, listed).module_name_qconfigs)
        for path, listed in (("backbone", False), ("rpn.head", True), ("roi_heads.box_head", False))
    }
    # per-level outputs concatenate in float (a quantized cat clamps to the first's range)
    assert quantize._mapping(record, "rpn.head", True).object_type_qconfigs[torch.cat] is None
    assert torch.cat not in quantize._mapping(record, "backbone").object_type_qconfigs
    assert kept == {
        "backbone": {"body.0.0"},
        "rpn.head": {"head.cls_logits"},
        "roi_heads.box_head": set(),
    }


def test_records_without_parts_read_as_backbone_and_head() -> None:
    """Detector records written before ``parts`` existed (FCOS/RetinaNet) still load."""
    data = {
        "method": "ptq_int8",
        "weight_bits": 8,
        "kind": "detector",
        "example_shapes": [[1, 3, 64, 64], [1, 8, 8, 8], [1, 8, 4, 4]],
        "float_shapes": {},
    }
    record = QuantRecord.from_json(data, {})
    assert record.parts == (("backbone", 0), ("head", 2))
    assert QuantRecord.from_json({**data, "kind": "classifier"}, {}).parts == ()
    assert QuantRecord.from_json(record.to_json(), {}) == record


def test_every_detector_family_has_parts() -> None:
    families = {family for group, _ in DETECTOR_PARTS for family in group}
    assert {detection.FasterRCNN, detection.FCOS, detection.RetinaNet} <= families
    assert detection.ssd.SSD in families

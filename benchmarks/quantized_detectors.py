"""Static int8 quantization (``ptq_int8``) of torchvision detectors: CPU latency ratio
of the int8 model (quantized parts: ``DETECTOR_PARTS``) to the float one.

Run: ``python benchmarks/quantized_detectors.py [--rounds 5] [--families NAME ...]``.

Random initialisation (``weights=None``; latency depends on the architecture, not the
weights; backbone BatchNorm statistics from random images, as MobileNetV3 features
vanish at random init; no boxes pass the score threshold in either model, see
``detector_families``),
calibrated on 2 random 640×480 images, one 640×480 image timed, 2 threads, float and
int8 in alternating rounds (ABBA), medians reported.
"""

from __future__ import annotations

import time

import torch
from detector_families import FAMILIES, _no_boxes, alternating_medians, print_table

from robustness_harness.compress import METHODS, CompressContext
from robustness_harness.compress.quantize import DETECTOR_PARTS
from robustness_harness_models.torchvision_detectors import with_backbone_statistics

DEFAULT = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "ssdlite320_mobilenet_v3_large",
)


def measure(name: str, rounds: int) -> str:
    torch.manual_seed(0)
    model = FAMILIES[name](weights=None, weights_backbone=None, num_classes=9)
    dense = _no_boxes(with_backbone_statistics(model, torch.rand(2, 3, 480, 640)))
    info = METHODS.get("ptq_int8")
    ctx = CompressContext(example_inputs=torch.rand(2, 3, 480, 640), progress=lambda _l: None)
    start = time.perf_counter()
    quantized = _no_boxes(info.fn(dense, info.params(calibration_images=2), ctx).eval())
    quantize_s = time.perf_counter() - start
    t_float, t_int8 = alternating_medians(dense, quantized, rounds)
    parts = next(p for families, p in DETECTOR_PARTS if isinstance(dense, families))
    return (
        f"| {name} | {', '.join(path for path, _ in parts)} | {t_float:.2f} s "
        f"| {t_int8 / t_float:.2f}× | {quantize_s:.0f} s |"
    )


def main() -> None:
    header = (
        "| family | int8 parts | float CPU latency, 640×480 | int8 latency ratio "
        "| quantizing took |"
    )
    print_table(__doc__, header, measure, DEFAULT, rounds=5)


if __name__ == "__main__":
    main()

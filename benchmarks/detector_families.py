"""Structured pruning (l1_filter 50 %) of each torchvision detection family: parameter
and CPU latency ratios to the dense model, measured in one run.

Run: ``python benchmarks/detector_families.py [--rounds 3] [--families NAME ...]``.

Random initialisation (``weights=None``; latency depends on the architecture, not the
weights; the score threshold is set to 1.01 so post-processing handles no boxes in
either model, as with a trained model's few boxes), one 640×480 image, 2 threads,
dense and pruned timed in alternating rounds (ABBA), medians reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torchvision.models.detection as detection
from torch import nn

from robustness_harness.compress import METHODS, CompressContext, finalize_pruning
from robustness_harness.compress.prune import count_parameters

FAMILIES: dict[str, Callable[..., nn.Module]] = {
    "fasterrcnn_resnet50_fpn": detection.fasterrcnn_resnet50_fpn,
    "fasterrcnn_resnet50_fpn_v2": detection.fasterrcnn_resnet50_fpn_v2,
    "fasterrcnn_mobilenet_v3_large_fpn": detection.fasterrcnn_mobilenet_v3_large_fpn,
    "fasterrcnn_mobilenet_v3_large_320_fpn": detection.fasterrcnn_mobilenet_v3_large_320_fpn,
    "retinanet_resnet50_fpn": detection.retinanet_resnet50_fpn,
    "fcos_resnet50_fpn": detection.fcos_resnet50_fpn,
    "ssd300_vgg16": detection.ssd300_vgg16,
    "ssdlite320_mobilenet_v3_large": detection.ssdlite320_mobilenet_v3_large,
}


def _seconds(model: nn.Module, image: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        model(image)
    return time.perf_counter() - start


def _no_boxes(model: nn.Module) -> nn.Module:
    for name in ("box_score_thresh", "score_thresh"):
        for owner in (model, getattr(model, "roi_heads", None)):
            if owner is not None and hasattr(owner, name):
                setattr(owner, name, 1.01)
    return model


def alternating_medians(first: nn.Module, second: nn.Module, rounds: int) -> tuple[float, float]:
    """Median seconds of each model on one 640×480 image, timed in alternating rounds."""
    image = [torch.rand(3, 480, 640)]
    times: tuple[list[float], list[float]] = ([], [])
    _seconds(first, image), _seconds(second, image)  # warm-up
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            times[i].append(_seconds((first, second)[i], image))
    return statistics.median(times[0]), statistics.median(times[1])


def measure(name: str, rounds: int) -> str:
    torch.manual_seed(0)
    dense = _no_boxes(FAMILIES[name](weights=None, weights_backbone=None, num_classes=9).eval())
    twin = _no_boxes(FAMILIES[name](weights=None, weights_backbone=None, num_classes=9).eval())
    twin.load_state_dict(dense.state_dict())
    info = METHODS.get("l1_filter")
    ctx = CompressContext(example_inputs=torch.rand(2, 3, 480, 640), progress=lambda _l: None)
    start = time.perf_counter()
    pruned = finalize_pruning(info.fn(twin, info.params(sparsity=0.5), ctx)).eval()
    prune_s = time.perf_counter() - start
    t_dense, t_pruned = alternating_medians(dense, pruned, rounds)
    p_dense, p_pruned = count_parameters(dense)[0], count_parameters(pruned)[0]
    return (
        f"| {name} | {p_dense / 1e6:.1f} M | {p_pruned / p_dense:.2f}× | {t_dense:.2f} s "
        f"| {t_pruned / t_dense:.2f}× | {prune_s:.1f} s |"
    )


def print_table(
    doc: str, header: str, measure: Callable[[str, int], str], families: Sequence[str], rounds: int
) -> None:
    """Parse ``--rounds`` and ``--families`` (default ``families``), then print the
    markdown table: ``header`` and one ``measure(family, rounds)`` row per family."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--families", nargs="*", default=list(families), choices=list(FAMILIES))
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for name in args.families:
        print(measure(name, args.rounds), flush=True)


def main() -> None:
    header = (
        "| family | dense params | params (l1_filter 50 %) | dense CPU latency, 640×480 "
        "| latency ratio | pruning took |"
    )
    print_table(__doc__, header, measure, list(FAMILIES), rounds=3)


if __name__ == "__main__":
    main()

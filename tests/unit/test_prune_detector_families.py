"""Structured pruning (l1_filter) of every torchvision detection family, and the round
trip of its checkpoint (observed: "l1_filter supports torchvision FCOS/RetinaNet
detectors and plain classifiers" for Faster R-CNN, SSD and SSDlite)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision.models.detection as detection
from torch import nn

from robustness_harness.compress import METHODS, CompressContext, finalize_pruning
from robustness_harness.compress.prune import count_parameters
from robustness_harness.store.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow


def _family(fn: Callable[..., nn.Module], **kwargs: object) -> Callable[[], nn.Module]:
    return lambda: fn(weights=None, weights_backbone=None, num_classes=4, **kwargs)


FAMILIES = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": _family(
        detection.fasterrcnn_mobilenet_v3_large_320_fpn
    ),
    "fasterrcnn_resnet50_fpn": _family(detection.fasterrcnn_resnet50_fpn),
    "fasterrcnn_resnet50_fpn_v2": _family(detection.fasterrcnn_resnet50_fpn_v2),
    "retinanet_resnet50_fpn": _family(detection.retinanet_resnet50_fpn),
    "fcos_resnet50_fpn": _family(detection.fcos_resnet50_fpn),
    "ssd300_vgg16": _family(detection.ssd300_vgg16),
    "ssdlite320_mobilenet_v3_large": _family(detection.ssdlite320_mobilenet_v3_large),
}


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


def _modules(model: nn.Module, prefix: str) -> list[nn.Module]:
    return [m for n, m in model.named_modules() if n.startswith(prefix) and n]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_l1_filter_prunes_the_family_and_its_checkpoint_round_trips(
    name: str, tmp_path: Path
) -> None:
    build = FAMILIES[name]
    torch.manual_seed(0)
    model = build().eval()
    before, _ = count_parameters(model)
    info = METHODS.get("l1_filter")
    ctx = CompressContext(example_inputs=torch.rand(2, 3, 320, 320), progress=lambda _l: None)
    pruned = finalize_pruning(info.fn(model, info.params(sparsity=0.5), ctx)).eval()
    after, _ = count_parameters(pruned)
    assert after < 0.6 * before, f"{name}: {after / before:.2f}x parameters"
    image = [torch.rand(3, 240, 320)]
    with torch.no_grad():
        out = pruned(image)
    assert set(out[0]) >= {"boxes", "scores", "labels"}
    save_checkpoint(pruned, tmp_path, meta={})
    loaded = load_checkpoint(build, tmp_path).eval()
    with torch.no_grad():
        again = loaded(image)
    assert all(torch.equal(out[0][k], again[0][k]) for k in out[0])


def test_faster_rcnn_keeps_fpn_outputs_and_prunes_the_box_head(tmp_path: Path) -> None:
    """FPN outputs feed RPN, RoI pooling and mask heads: their width stays; the RoI box
    head's hidden layers (fc6/fc7) shrink; the predictor's outputs stay."""
    model = FAMILIES["fasterrcnn_resnet50_fpn"]().eval()
    info = METHODS.get("l1_filter")
    ctx = CompressContext(example_inputs=torch.rand(2, 3, 224, 224), progress=lambda _l: None)
    pruned = info.fn(model, info.params(sparsity=0.5), ctx)
    assert pruned.backbone.out_channels == 256
    assert all(block[0].out_channels == 256 for block in pruned.backbone.fpn.layer_blocks)
    assert pruned.roi_heads.box_head.fc6.out_features == 512
    assert pruned.roi_heads.box_head.fc7.in_features == 512
    predictor = pruned.roi_heads.box_predictor
    assert (predictor.cls_score.out_features, predictor.bbox_pred.out_features) == (4, 16)
    assert pruned.rpn.head.cls_logits.out_channels == 3


STRUCTURED = {
    "l1_filter agp": ("l1_filter", {"sparsity": 0.5, "schedule": "agp", "steps": 2}),
    "slimming": ("slimming", {"sparsity": 0.4}),
    "ops_budget": ("ops_budget", {"budget": 0.6}),
}


@pytest.mark.parametrize("method", sorted(STRUCTURED))
@pytest.mark.parametrize(
    "name", ["fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large"]
)
def test_every_structured_method_runs_on_the_family(name: str, method: str) -> None:
    """Training bursts are a no-op here: the test is that the method traces and prunes
    the family and the result still detects."""
    torch.manual_seed(0)
    model = FAMILIES[name]().eval()
    fn, params = STRUCTURED[method]
    info = METHODS.get(fn)
    ctx = CompressContext(
        example_inputs=torch.rand(2, 3, 320, 320),
        progress=lambda _l: None,
        train=lambda *_args, **_kwargs: None,
    )
    pruned = finalize_pruning(info.fn(model, info.params(**params), ctx)).eval()
    with torch.no_grad():
        out = pruned([torch.rand(3, 240, 320)])
    assert set(out[0]) >= {"boxes", "scores", "labels"}

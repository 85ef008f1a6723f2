"""torchvision detection architectures with random init (``weights=None``), for user checkpoints.

No weights are downloaded: a suite names one of these and points ``checkpoint:`` at
its own trained weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import detection


def _build(name: str, num_classes: int, **kwargs: object) -> nn.Module:
    builder = getattr(detection, name)
    return builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)


def fasterrcnn_mobilenet_v3_large_320_fpn(num_classes: int = 91, **kwargs: object) -> nn.Module:
    """Faster R-CNN, MobileNetV3-Large 320 FPN backbone, random init."""
    return _build("fasterrcnn_mobilenet_v3_large_320_fpn", num_classes, **kwargs)


def retinanet_resnet50_fpn(num_classes: int = 91, **kwargs: object) -> nn.Module:
    """RetinaNet, ResNet-50 FPN backbone, random init."""
    return _build("retinanet_resnet50_fpn", num_classes, **kwargs)


def fcos_resnet50_fpn(num_classes: int = 91, **kwargs: object) -> nn.Module:
    """FCOS, ResNet-50 FPN backbone, random init."""
    return _build("fcos_resnet50_fpn", num_classes, **kwargs)


def ssdlite320_mobilenet_v3_large(num_classes: int = 91, **kwargs: object) -> nn.Module:
    """SSDlite 320, MobileNetV3-Large backbone, random init."""
    return _build("ssdlite320_mobilenet_v3_large", num_classes, **kwargs)


def with_backbone_statistics(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """``model`` (eval mode) with its backbone's BatchNorm statistics measured on ``images``
    (B, 3, H, W in [0, 1]): at random init MobileNetV3 features vanish (std 1e-8 to 1e-26),
    unlike a trained model's; quantization error and NMS load then resemble a trained one's."""
    for module in model.backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the batch
    with torch.no_grad():
        model.backbone.train()(model.transform(list(images))[0].tensors)
    return model.eval()

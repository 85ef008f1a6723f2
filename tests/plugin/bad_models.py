"""User model factories that break the model contract at run time (DESIGN §11), as the
text of a module ``userfactories`` for tests to write next to their suites."""

from __future__ import annotations

FACTORIES = """
import torch
from torch import nn
from robustness_harness_models.toydrive import build_toydrive_fcos


def flat28(num_classes):
    "A classifier for 28 x 28 images only."
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, num_classes))


class EvalOnly(nn.Module):
    "A detector whose forward takes images only (no targets, no losses)."

    def __init__(self, num_classes=7):
        super().__init__()
        self.inner = build_toydrive_fcos(num_classes=num_classes)

    def forward(self, images):
        self.inner.eval()
        return self.inner(images)


class NoLosses(EvalOnly):
    "A detector that accepts targets but returns detections in training mode too."

    def forward(self, images, targets=None):
        return super().forward(images)


def eval_only(num_classes):
    return EvalOnly(num_classes)


def no_losses(num_classes):
    return NoLosses(num_classes)
"""

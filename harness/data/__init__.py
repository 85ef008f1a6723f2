"""Datasets: the COCO reader with attribute splits, and the generated toydrive set."""

from robustness_harness.data.builtin import toydrive_dataset, toydrive_dir
from robustness_harness.data.coco import CocoDetectionData, DetectionTorchDataset, collate_detection
from robustness_harness.data.toydrive import GENERATOR_VERSION, TOYDRIVE_CLASSES, generate_toydrive

__all__ = [
    "GENERATOR_VERSION",
    "TOYDRIVE_CLASSES",
    "CocoDetectionData",
    "DetectionTorchDataset",
    "collate_detection",
    "generate_toydrive",
    "toydrive_dataset",
    "toydrive_dir",
]

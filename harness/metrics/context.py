"""What model metrics (attacks, latency, size, saliency) and corruption metrics receive."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class ModelContext:
    """One variant's model with its evaluation data, for ``inputs="model"`` metrics.

    ``model`` is in eval mode on ``device``; ``data`` is the check's evaluation set
    (``CocoDetectionData`` or ``ClassificationData``, split and image cap applied);
    ``task`` is ``"detection"`` or ``"classification"``; ``checkpoint_dir`` holds the
    saved checkpoint (``model.safetensors``) or is None for an unsaved model;
    ``baseline_model()`` loads the suite's baseline variant (for comparisons);
    ``twin`` is the fake-quant twin of a quantized model (None when the model is float):
    the float model before its quantize step with fake-quantized weights and activations
    (``robustness_harness.compress.quantize.fake_quant_twin``), which attacks and saliency
    take gradients of; a quantized model and its twin are evaluated on the CPU (quantized
    kernels are CPU-only); ``batch_size`` is a sensible inference batch.
    """

    model: nn.Module
    data: Any
    device: torch.device
    task: str
    seed: int = 0
    checkpoint_dir: Path | None = None
    baseline_model: Callable[[], nn.Module] | None = None
    twin: nn.Module | None = None
    batch_size: int = 32
    progress: Callable[[str], None] = print

    def images(self, image_ids: list[int] | None = None) -> torch.Tensor | list[torch.Tensor]:
        """Images as float tensors in [0, 1] (CHW) on ``device``: a batch tensor when all
        have one size, else a list."""
        ids = self.data.image_ids if image_ids is None else image_ids
        tensors = [
            torch.from_numpy(self.data.load_image(i)).permute(2, 0, 1).float().div(255.0)
            for i in ids
        ]
        if tensors and all(t.shape == tensors[0].shape for t in tensors):
            return torch.stack(tensors).to(self.device)
        return [t.to(self.device) for t in tensors]


@dataclass(frozen=True)
class CorruptionGrid:
    """The task's main score (mAP or accuracy) clean and per (corruption, severity).

    ``values[(name, severity)]``; ``families`` maps each corruption to its family;
    ``baseline`` is the baseline variant's grid (None for the baseline itself), used
    by corruption errors (CE).
    """

    clean: float
    values: Mapping[tuple[str, int], float]
    families: Mapping[str, str]
    baseline: CorruptionGrid | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def corruptions(self) -> list[str]:
        return list(dict.fromkeys(c for c, _ in self.values))

    @property
    def severities(self) -> list[int]:
        return sorted({s for _, s in self.values})

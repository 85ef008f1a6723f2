"""Slimming on equal BatchNorm scales (observed: resnet18 with weights=None, where every
γ is 1, lost 96 % of its parameters at sparsity 0.3: ties emptied the first groups)."""

from __future__ import annotations

import torch
import torchvision.models as tvm

from robustness_harness.compress import METHODS, CompressContext
from robustness_harness.compress.prune import count_parameters
from robustness_harness.compress.slimming import select_smallest


def test_ties_thin_every_group_alike_and_real_scores_still_rank_first() -> None:
    scored = [("a", torch.ones(4)), ("b", torch.ones(16)), ("c", torch.tensor([0.1, 0.2, 5, 0.3]))]
    chosen = dict(select_smallest(scored, 0.5))
    assert chosen["c"] == [0, 1, 3]  # the smallest scores go first, the best one stays
    assert len(chosen["a"]) == 2 and len(chosen["b"]) == 7  # the rest: about half of each


def test_untrained_resnet_loses_about_the_asked_share() -> None:
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None, num_classes=10).eval()
    before, _ = count_parameters(model)
    info = METHODS.get("slimming")
    ctx = CompressContext(example_inputs=torch.rand(2, 3, 32, 32), progress=lambda _l: None)
    pruned = info.fn(model, info.params(sparsity=0.3, train_steps=0), ctx)
    ratio = count_parameters(pruned)[0] / before
    assert 0.35 < ratio < 0.65, f"{ratio:.2f}x parameters"  # 30 % of channels: about 0.49x

"""HYDRA: score-based pruning with frozen weights, unstructured and kernel-level."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.nn.utils import parametrize, prune

from robustness_harness.compress import METHODS, CompressContext, finalize_pruning, model_sparsity
from robustness_harness.compress.graph import prunable_layers, trace_plan
from robustness_harness.compress.hydra import HydraParams, deeplift_scores, hydra, magnitude_scores
from robustness_harness.compress.prune import effective_tensor
from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.errors import HarnessError
from robustness_harness.train.adversarial_finetune import AdversarialTraining
from robustness_harness_models.toydrive import build_toydrive_fcos
from tests.unit import compress_helpers as h

# one torch thread for every test here, and a small toysigns training set per module
_one_thread = h.one_thread
data = h.signs_data


def _masks(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight_mask.clone() for _, m in prunable_layers(model)]


def test_registered() -> None:
    assert METHODS.get("hydra").params is HydraParams


@pytest.mark.slow
@pytest.mark.parametrize("structure", ["unstructured", "kernel"])
def test_hydra_reaches_sparsity_per_layer_and_round_trips(
    data: ClassificationData, structure: str, tmp_path: Path
) -> None:
    model = h.cnn()
    weights = {n: m.weight.detach().clone() for n, m in prunable_layers(model)}
    ctx = h.context(data)
    hydra(model, HydraParams(sparsity=0.8, structure=structure, score_steps=10), ctx)
    assert ctx.train.calls[0]["steps"] == 10 and ctx.train.calls[0]["lr"] == 0.01  # type: ignore[union-attr]
    assert not parametrize.is_parametrized(model)
    assert model_sparsity(model) == pytest.approx(0.8, abs=0.01)
    for name, layer in prunable_layers(model):
        assert torch.equal(layer.weight_orig, weights[name])  # weights were frozen
        assert float((layer.weight_mask == 0).float().mean()) == pytest.approx(0.8, abs=0.03)
        if structure == "kernel" and layer.weight.ndim == 4:
            per_kernel = layer.weight_mask.flatten(2)
            assert torch.equal(per_kernel.amin(2), per_kernel.amax(2))  # whole kernels
    h.assert_round_trip(model, h.cnn, h.images(data), tmp_path)


@pytest.mark.slow
def test_score_training_changes_the_mask_and_masks_stay_through_fine_tuning(
    data: ClassificationData,
) -> None:
    initial, trained = h.cnn(), h.cnn()
    hydra(initial, HydraParams(sparsity=0.5, score_steps=0), h.context(data))
    hydra(trained, HydraParams(sparsity=0.5, score_steps=30), h.context(data))
    changed = [
        float((a != b).float().mean())
        for a, b in zip(_masks(initial), _masks(trained), strict=True)
    ]
    assert max(changed) > 0.01
    masks = _masks(trained)
    h.Trainer(data)(trained, 5)  # the variant's fine-tune
    for (_, layer), mask in zip(prunable_layers(trained), masks, strict=True):
        assert torch.equal(layer.weight_mask, mask)
        assert torch.count_nonzero(effective_tensor(layer, "weight")[mask == 0]) == 0
    finalize_pruning(trained)
    assert not prune.is_pruned(trained)
    assert model_sparsity(trained) == pytest.approx(0.5, abs=0.01)


def test_magnitude_init_is_hydras_scaled_init() -> None:
    conv = nn.Conv2d(2, 3, 3)
    scores = magnitude_scores(conv, tuple(conv.weight.shape))
    w = conv.weight.detach().abs()
    assert torch.allclose(scores, (6 / 18) ** 0.5 * w / w.max())
    kernel = magnitude_scores(conv, (3, 2, 1, 1))
    assert kernel.shape == (3, 2, 1, 1)
    assert torch.allclose(
        kernel.flatten(), ((6 / 18) ** 0.5 * w.mean((2, 3)) / w.mean((2, 3)).max()).flatten()
    )


def test_deeplift_scores_are_weight_contributions() -> None:
    """For logits = W x + b, DeepLIFT gives m = 1 on the target logit, so the contribution
    of w[o, i] is w[o, i] · Δx[i] summed over images of class o, and 0 elsewhere."""
    torch.manual_seed(0)
    linear = nn.Linear(12, 3)
    model = nn.Sequential(nn.Flatten(), linear)
    x = torch.rand(4, 3, 2, 2)
    plan = trace_plan(model, x, (), "test", batch=None)
    (scores,) = deeplift_scores(model, plan, [linear], "unstructured").values()
    target = model(x).argmax(1)
    expected = torch.zeros(3, 12)
    for image, o in zip(x.flatten(1), target.tolist(), strict=True):
        expected[o] += linear.weight[o].detach() * image  # reference: black (zeros)
    assert torch.allclose(scores, expected.abs(), atol=1e-6)


def test_deeplift_init_on_fcos_and_a_classifier(data: ClassificationData) -> None:
    model = h.cnn()
    hydra(
        model,
        HydraParams(sparsity=0.6, init="deeplift", structure="kernel", score_steps=0),
        h.context(data),
    )
    assert model_sparsity(model) == pytest.approx(0.6, abs=0.01)
    torch.manual_seed(0)
    fcos = build_toydrive_fcos()
    ctx = CompressContext(example_inputs=torch.rand(2, 3, 64, 64), progress=lambda _: None)
    hydra(fcos, HydraParams(sparsity=0.5, init="deeplift", score_steps=0), ctx)
    assert model_sparsity(fcos) == pytest.approx(0.5, abs=0.01)
    with torch.no_grad():
        assert len(fcos.eval()([torch.rand(3, 128, 128)])) == 1


def test_deeplift_reused_activation_is_a_clear_error(data: ClassificationData) -> None:
    relu = nn.ReLU()
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), relu, nn.Conv2d(4, 4, 3), relu, nn.Flatten(), nn.LazyLinear(2)
    )
    model(torch.rand(1, 3, 8, 8))
    ctx = CompressContext(example_inputs=torch.rand(2, 3, 8, 8), progress=lambda _: None)
    with pytest.raises(HarnessError, match="use init: magnitude"):
        hydra(model, HydraParams(sparsity=0.5, init="deeplift", score_steps=0), ctx)


@pytest.mark.slow
def test_adversarial_objective_reaches_the_training_loop(data: ClassificationData) -> None:
    model = h.cnn()
    ctx = h.context(data)
    params = HydraParams.model_validate(
        {"sparsity": 0.5, "score_steps": 2, "adversarial": {"method": "fgsm", "eps": 2 / 255}}
    )
    hydra(model, params, ctx)
    adversarial = ctx.train.calls[0]["adversarial"]  # type: ignore[union-attr]
    assert adversarial == AdversarialTraining(method="fgsm", eps=2 / 255)
    assert (
        HydraParams.model_validate({"sparsity": 0.5, "adversarial": "pgd"}).adversarial.steps == 10
    )
    hash(params)


def test_needs_training_for_score_steps(data: ClassificationData) -> None:
    model = h.cnn()
    ctx = CompressContext(example_inputs=h.images(data), progress=lambda _: None)
    with pytest.raises(HarnessError, match="set score_steps: 0"):
        hydra(model, HydraParams(sparsity=0.5), ctx)
    assert not parametrize.is_parametrized(model)  # cleaned up


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sparsity": 1.0}, "sparsity must be in [0, 1)"),
        ({"sparsity": 0.5, "structure": "filter"}, "structure"),
        ({"sparsity": 0.5, "init": "random"}, "init"),
        ({"sparsity": 0.5, "score_steps": -1}, "score_steps"),
        ({"sparsity": 0.5, "adversarial": {"method": "cw"}}, "method"),
        ({"sparsity": 0.5, "adversarial": {"method": "fgsm", "steps": 3}}, "fgsm takes one step"),
    ],
)
def test_params_reject(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        HydraParams.model_validate(params)
    assert message in str(err.value)

"""HYDRA (Sehwag et al. 2020): learn which weights to keep with the weights frozen.

Every Conv/Linear weight gets an importance score; the forward pass uses
``W ⊙ 1[top-k |s|]`` per layer (k = the kept share, as HYDRA's per-layer ``k``) with
a straight-through gradient to the scores (``torch.nn.utils.parametrize``), and only
the scores train (``ctx.train``, optionally on adversarial batches). The final top-k
mask then becomes a ``torch.nn.utils.prune`` mask that stays live through the
variant's fine-tune; ``finalize_pruning`` makes it permanent.

``structure: kernel`` scores whole k×k kernels (one score per (out, in) pair; each
weight of Linear and 1×1 layers is its own kernel), following Liu et al.'s YOLOv3
adaptation. Score initialisation:

- ``magnitude``: HYDRA's scaled init, s = sqrt(6 / fan_in) · |W| / max |W| (kernel: the
  mean |W| of the kernel in place of |W|).
- ``deeplift``: captum ``LayerDeepLift`` with ``multiply_by_inputs=False`` gives the
  DeepLIFT multipliers m of the model output with respect to each layer's output, on
  ``ctx.example_inputs`` against an all-black reference. As the layer is linear in
  its weights, the contribution of weight w[o, i, u, v] is
  w[o, i, u, v] · Σ_{images, positions p} m[o, p] · Δx[i, p + (u, v)], with Δx the
  layer's input minus its input on the reference — the weight-gradient correlation of
  Δx and m, computed with autograd. The score is the absolute contribution (kernel:
  mean over the kernel). The output is the predicted class's logit for classifiers
  and, for detectors, the sum of all head outputs (class, box and centerness), run one
  pyramid level at a time because DeepLIFT needs every module used once per pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from captum.attr import LayerDeepLift
from pydantic import Field, ValidationError, field_validator
from torch import nn
from torch.nn.utils import parametrize, prune

from robustness_harness.compress.base import CompressContext
from robustness_harness.compress.graph import TracePlan, modes_kept, prunable_layers, trace_plan
from robustness_harness.compress.prune import finalize_pruning, model_sparsity, pruned_layers
from robustness_harness.compress.schedule import SparsityParams, require_training
from robustness_harness.errors import HarnessError
from robustness_harness.registry import register_compression
from robustness_harness.suite.problems import problem_from_pydantic
from robustness_harness.train.adversarial_finetune import AdversarialTraining


class HydraParams(SparsityParams):
    """``sparsity``: share of weights (or kernels) masked in every Conv/Linear layer;
    ``structure``: ``unstructured`` or ``kernel``; ``init``: ``magnitude`` or
    ``deeplift``; ``score_steps`` optimizer steps of score training at ``score_lr``
    (0: prune by the initial scores); ``adversarial``: train the scores on FGSM/PGD
    batches (as ``finetune.adversarial``)."""

    structure: Literal["unstructured", "kernel"] = "unstructured"
    init: Literal["magnitude", "deeplift"] = "magnitude"
    score_steps: int = Field(100, ge=0)
    score_lr: float = Field(0.01, gt=0)
    adversarial: AdversarialTraining | None = None

    @field_validator("adversarial", mode="before")
    @classmethod
    def _adversarial(cls, value: Any) -> Any:
        if value is None or isinstance(value, AdversarialTraining):
            return value
        # imported here: the spec schema imports the compression registry (this package)
        from robustness_harness.suite.schema import AdversarialSpec

        try:
            spec = AdversarialSpec.model_validate(value)
        except ValidationError as exc:
            raise problem_from_pydantic(exc.errors()[0]) from None
        return AdversarialTraining.coerce(spec)


# -- scores and masks ----------------------------------------------------------------------------


class TopKMask(nn.Module):
    """Parametrization ``W ↦ W ⊙ 1[top-k |scores|]``; the gradient reaches the scores
    straight through the binary mask (HYDRA's ``GetSubnet``)."""

    def __init__(self, scores: torch.Tensor, keep: int) -> None:
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.keep = keep

    def mask(self) -> torch.Tensor:
        """The binary top-k mask of ``|scores|`` (no gradient)."""
        flat = self.scores.detach().abs().flatten()
        mask = torch.zeros_like(flat)
        mask[flat.topk(self.keep).indices] = 1.0
        return mask.view_as(self.scores)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        score = self.scores.abs()
        return weight * (self.mask() + score - score.detach())


def score_shape(module: nn.Module, structure: str) -> tuple[int, ...]:
    """One score per weight, or per kernel (``(out, in, 1, 1)`` for a k×k conv)."""
    shape = tuple(module.weight.shape)
    if structure == "kernel" and isinstance(module, nn.modules.conv._ConvNd):
        return (*shape[:2], *([1] * (len(shape) - 2)))
    return shape


def _per_unit(values: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Mean of ``values`` over each kernel when ``shape`` scores kernels."""
    dims = [d for d, n in enumerate(shape) if n == 1 and values.shape[d] != 1]
    return values.mean(dim=dims, keepdim=True) if dims else values


def magnitude_scores(module: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """HYDRA's scaled init: sqrt(6 / fan_in) · |W| / max |W| (per kernel if ``shape`` says)."""
    weight = module.weight.detach().abs()
    fan_in = weight[0].numel()
    unit = _per_unit(weight, shape)
    return math.sqrt(6.0 / fan_in) * unit / unit.max().clamp_min(1e-12)


# -- DeepLIFT initialisation ---------------------------------------------------------------------


class _DetectorLevel(nn.Module):
    """A detector's backbone + head on one pyramid level, summed to one value per image."""

    def __init__(self, detector: nn.Module, level: int) -> None:
        super().__init__()
        self.detector = detector
        self.level = level

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = list(self.detector.backbone(images).values())
        outputs = self.detector.head([features[self.level]])
        return sum(v.flatten(1).sum(1) for v in outputs.values())


def _outputs(model: nn.Module, plan: TracePlan) -> list[tuple[nn.Module, Any]]:
    """``(network, target)`` pairs whose DeepLIFT contributions add up to the model's."""
    if plan.forward_fn is None:
        with torch.no_grad():
            return [(model, model(plan.example).argmax(1))]
    with torch.no_grad():
        levels = len(model.backbone(plan.example))
    return [(_DetectorLevel(model, level), None) for level in range(levels)]


def _input_difference(net: nn.Module, layer: nn.Module, plan: TracePlan) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            net(plan.example)
            net(plan.black)
    finally:
        handle.remove()
    return seen[0] - seen[1]


def _weight_contribution(layer: nn.Module, dx: torch.Tensor, mult: torch.Tensor) -> torch.Tensor:
    """w · Σ m · Δx over images and positions: the contribution of every weight."""
    weight = layer.weight.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        if isinstance(layer, nn.Linear):
            out = nn.functional.linear(dx, weight)
        else:
            out = layer._conv_forward(dx, weight, None)
        (grad,) = torch.autograd.grad((out * mult).sum(), weight)
    return weight.detach() * grad


def deeplift_scores(
    model: nn.Module, plan: TracePlan, layers: list[nn.Module], structure: str
) -> dict[nn.Module, torch.Tensor]:
    """|DeepLIFT contribution| of every weight (or kernel mean) of ``layers``, see module."""
    scores = {layer: torch.zeros_like(layer.weight) for layer in layers}
    example = plan.example.detach()
    with modes_kept(model):
        model.eval()
        for net, target in _outputs(model, plan):
            for layer in layers:
                attribution = LayerDeepLift(net, layer, multiply_by_inputs=False)
                try:
                    mult = attribution.attribute(example, baselines=plan.black, target=target)
                except RuntimeError as exc:
                    if "not have been used in the graph" in str(exc):
                        continue  # e.g. a finer pyramid level's layer: no contribution here

                    raise HarnessError(
                        f"hydra init 'deeplift' failed on {type(model).__name__}: "
                        f"{str(exc).splitlines()[0]}",
                        field="init",
                        hint="captum's DeepLIFT needs every activation module used once per "
                        "forward pass; use init: magnitude for this model",
                    ) from None
                dx = _input_difference(net, layer, plan)
                scores[layer] += _weight_contribution(layer, dx, mult.detach())
    return {
        layer: _per_unit(score.abs(), score_shape(layer, structure))
        for layer, score in scores.items()
    }


# -- the method ----------------------------------------------------------------------------------


@contextmanager
def _only_scores_train(model: nn.Module) -> Iterator[None]:
    """Freeze every parameter (HYDRA trains the scores only); restore afterwards."""
    flags = {p: p.requires_grad for p in model.parameters()}
    for param in flags:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in flags.items():
            param.requires_grad_(flag)


def _initial_scores(
    model: nn.Module, params: HydraParams, ctx: CompressContext, layers: list[nn.Module]
) -> dict[nn.Module, torch.Tensor]:
    if params.init == "magnitude":
        return {m: magnitude_scores(m, score_shape(m, params.structure)) for m in layers}
    plan = trace_plan(model, ctx.example_inputs, (), "hydra init 'deeplift'", batch=None)
    return deeplift_scores(model, plan, layers, params.structure)


@register_compression(
    "prune", "hydra", params=HydraParams, uses=lambda p: "train" if p.score_steps else None
)
def hydra(model: nn.Module, params: HydraParams, ctx: CompressContext) -> nn.Module:
    """Learn top-k importance scores with frozen weights; keep the winners as masks."""
    if not prunable_layers(model):
        raise HarnessError(
            f"hydra found no Conv or Linear layers in {type(model).__name__}",
            hint="prune a model built from nn.Conv*/nn.Linear layers",
        )
    if params.sparsity == 0:
        return model
    finalize_pruning(model)  # earlier masks are folded in; their zeros score lowest
    layers = pruned_layers(model, params.ignore, "hydra")
    scores = _initial_scores(model, params, ctx, layers)
    masks = {}
    for layer in layers:
        keep = max(1, round((1 - params.sparsity) * scores[layer].numel()))
        parametrize.register_parametrization(layer, "weight", TopKMask(scores[layer], keep))
    try:
        if params.score_steps:
            train = require_training(
                ctx, "hydra trains importance scores", "prune.score_steps", "set score_steps: 0"
            )
            extra = {"adversarial": params.adversarial} if params.adversarial else {}
            with _only_scores_train(model):
                for layer in layers:
                    layer.parametrizations.weight[0].scores.requires_grad_(True)
                train(model, params.score_steps, lr=params.score_lr, **extra)
        for layer in layers:
            masks[layer] = layer.parametrizations.weight[0].mask()
    finally:
        for layer in layers:
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
    for layer, mask in masks.items():
        prune.custom_from_mask(layer, "weight", mask.expand_as(layer.weight) != 0)
    ctx.progress(
        f"hydra ({params.structure}, init {params.init}, {params.score_steps} score steps"
        f"{', adversarial ' + params.adversarial.method if params.adversarial else ''}): "
        f"sparsity {model_sparsity(model):.3f}"
    )
    return model

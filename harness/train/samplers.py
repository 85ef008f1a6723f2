"""Class-balanced sampling and loss weights for fine-tuning (Cygert & Czyżewski, III-D).

- ``uniform``: every image once per epoch, shuffled.
- ``rfs``, repeat factor sampling (Gupta et al., LVIS): ``r_c = max(1, sqrt(t / f_c))``
  with ``f_c`` the fraction of training images that contain class ``c`` and ``t`` the
  ``rfs_threshold``; an image's factor is the max over its classes (1 without objects).
  Each epoch holds image ``i`` ``floor(r_i)`` times plus once more with probability
  ``frac(r_i)`` (stochastic rounding, as detectron2's ``RepeatFactorTrainingSampler``).
- ``inv``: class weights ``w_c = sqrt(t / f_c)``; ``inv_cap``: ``max(1, sqrt(t / f_c))``.
- ``ens``, effective number of samples (Cui et al.): ``w_c ∝ (1 − β) / (1 − β^N_c)``
  with ``N_c`` the instances of ``c``, normalised so that ``Σ_c w_c`` = number of classes.

The paper also runs the weighting methods at a scale ``λ ∈ {0.5, 1, 2}`` (``lam``). It
gives no formula; here the weights become ``w_c^λ`` (before the ENS normalisation):
``λ = 1`` is the form above, ``λ = 2`` turns the inverse square root into the inverse
frequency, ``λ = 0`` is uniform, and weights stay positive at every ``λ`` (a linear
interpolation ``1 + λ(w_c − 1)`` turns negative at ``λ = 2`` for frequent classes).

Classification uses ``inv``/``inv_cap``/``ens`` as cross-entropy class weights, with
uniform sampling. Detection: torchvision detectors compute their classification loss
inside the head with no per-class weight, so the weights become image sampling rates
instead: ``r_i`` = max over the image's classes of ``w_c`` (1 without objects, like the
paper's background weight), rescaled to mean 1 so that an epoch keeps its length, then
sampled like ``rfs``; in expectation this weights each image's whole loss by ``r_i``.

The number of optimizer steps never depends on the sampler (``epochs × images / batch``),
so samplers are compared at equal compute.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

SAMPLERS = ("uniform", "rfs", "inv", "inv_cap", "ens")
THRESHOLD_SAMPLERS = ("rfs", "inv", "inv_cap")
"""Samplers that need ``rfs_threshold`` t."""
WEIGHTING_SAMPLERS = ("inv", "inv_cap", "ens")
"""Samplers that define class loss weights (scaled by ``lam``)."""


class SamplerSettings(Protocol):
    """The sampler fields of a recipe (``TrainRecipe`` fits)."""

    sampler: str
    rfs_threshold: float | None
    beta: float | None
    lam: float


@dataclass(frozen=True)
class SamplerProblem:
    """What is wrong with sampler settings: the field, the message and a fix."""

    field: str
    message: str
    hint: str


def sampler_problem(
    sampler: str, rfs_threshold: float | None, beta: float | None, lam: float
) -> SamplerProblem | None:
    """The first inconsistency among the sampler settings, or None if they are usable."""
    if sampler not in SAMPLERS:
        return SamplerProblem(
            "sampler", f"unknown sampler {sampler!r}", f"use one of {', '.join(SAMPLERS)}"
        )
    if sampler in THRESHOLD_SAMPLERS:
        if rfs_threshold is None:
            return SamplerProblem(
                "rfs_threshold",
                f"sampler '{sampler}' needs rfs_threshold t (classes in fewer than a "
                "fraction t of the training images are up-weighted)",
                "add rfs_threshold: 0.1 (a fraction in (0, 1])",
            )
        if not (0 < rfs_threshold <= 1):
            return SamplerProblem(
                "rfs_threshold",
                f"rfs_threshold must be a fraction in (0, 1], got {rfs_threshold}",
                "use e.g. rfs_threshold: 0.1",
            )
    elif rfs_threshold is not None:
        return SamplerProblem(
            "rfs_threshold",
            f"rfs_threshold applies to samplers {', '.join(THRESHOLD_SAMPLERS)}, not '{sampler}'",
            "remove rfs_threshold or use sampler: rfs",
        )
    if sampler == "ens":
        if beta is None:
            return SamplerProblem(
                "beta",
                "sampler 'ens' needs beta, the effective-number parameter in (0, 1)",
                "add beta: 0.999",
            )
        if not (0 < beta < 1):
            return SamplerProblem(
                "beta",
                f"beta must lie strictly between 0 and 1, got {beta}",
                "use e.g. beta: 0.999 (closer to 1 weights rare classes more)",
            )
    elif beta is not None:
        return SamplerProblem(
            "beta", f"beta applies to sampler 'ens', not '{sampler}'", "remove beta"
        )
    if not (math.isfinite(lam) and lam >= 0):
        return SamplerProblem(
            "lam", f"lam must be a finite number >= 0, got {lam}", "use lam: 0.5, 1 or 2"
        )
    if lam != 1 and sampler not in WEIGHTING_SAMPLERS:
        return SamplerProblem(
            "lam",
            f"lam scales the class weights of {', '.join(WEIGHTING_SAMPLERS)}, "
            f"not sampler '{sampler}'",
            "remove lam",
        )
    return None


# -- class statistics and weights ------------------------------------------------------------


@dataclass(frozen=True)
class ClassCounts:
    """Per-class counts over a training set: images containing the class, instances."""

    n_images: int
    images_with: dict[int, int]
    instances: dict[int, int]

    @classmethod
    def from_labels(cls, labels_per_image: Sequence[Sequence[int]]) -> ClassCounts:
        """Counts from each image's labels (all its boxes' labels, or its one label)."""
        images_with: Counter[int] = Counter()
        instances: Counter[int] = Counter()
        for labels in labels_per_image:
            values = [int(c) for c in labels]
            instances.update(values)
            images_with.update(set(values))
        return cls(len(labels_per_image), dict(images_with), dict(instances))

    def fraction(self, c: int) -> float:
        """``f_c``: the fraction of images that contain class ``c``."""
        return self.images_with[c] / self.n_images


def rfs_factors(counts: ClassCounts, threshold: float) -> dict[int, float]:
    """Class repeat factors ``r_c = max(1, sqrt(t / f_c))`` (paper eq. 2)."""
    return {c: max(1.0, math.sqrt(threshold / counts.fraction(c))) for c in counts.images_with}


def class_weights(
    method: str,
    counts: ClassCounts,
    *,
    threshold: float | None = None,
    beta: float | None = None,
    lam: float = 1.0,
) -> dict[int, float]:
    """Class loss weights of ``inv``, ``inv_cap`` or ``ens`` at scale ``lam`` (see module)."""
    problem = sampler_problem(method, threshold, beta, lam)
    if problem is not None or method not in WEIGHTING_SAMPLERS:
        raise ValueError(problem.message if problem else f"{method!r} defines no class weights")
    classes = sorted(counts.images_with)
    if method == "ens":
        assert beta is not None
        raw = {c: ((1 - beta) / (1 - beta ** counts.instances[c])) ** lam for c in classes}
        total = sum(raw.values())
        return {c: w * len(classes) / total for c, w in raw.items()}
    assert threshold is not None
    inv = {c: math.sqrt(threshold / counts.fraction(c)) for c in classes}
    if method == "inv_cap":
        inv = {c: max(1.0, w) for c, w in inv.items()}
    return {c: w**lam for c, w in inv.items()}


def image_factors(
    labels_per_image: Sequence[Sequence[int]], per_class: Mapping[int, float]
) -> list[float]:
    """Each image's factor: the max of ``per_class`` over its labels (1 without labels)."""
    return [max((per_class[int(c)] for c in labels), default=1.0) for labels in labels_per_image]


@dataclass(frozen=True)
class Balancing:
    """How one training run balances classes.

    ``repeat_factors`` (per image; None: each image once per epoch) drive the index
    stream; ``class_weights`` (label → weight; None: unweighted) go to the loss.
    """

    repeat_factors: list[float] | None = None
    class_weights: dict[int, float] | None = None


def balancing(
    settings: SamplerSettings,
    labels_per_image: Sequence[Sequence[int]],
    *,
    loss_weights: bool,
) -> Balancing:
    """The ``Balancing`` of ``settings.sampler`` on a training set.

    ``loss_weights``: whether the training loop applies class weights to its loss
    (classification); if not, weighting samplers turn into sampling rates (detection).
    """
    problem = sampler_problem(settings.sampler, settings.rfs_threshold, settings.beta, settings.lam)
    if problem is not None:
        raise ValueError(f"{problem.field}: {problem.message}; {problem.hint}")
    if settings.sampler == "uniform" or not labels_per_image:
        return Balancing()
    counts = ClassCounts.from_labels(labels_per_image)
    if settings.sampler == "rfs":
        assert settings.rfs_threshold is not None
        factors = rfs_factors(counts, settings.rfs_threshold)
        return Balancing(repeat_factors=image_factors(labels_per_image, factors))
    weights = class_weights(
        settings.sampler,
        counts,
        threshold=settings.rfs_threshold,
        beta=settings.beta,
        lam=settings.lam,
    )
    if loss_weights:
        return Balancing(class_weights=weights)
    rates = image_factors(labels_per_image, weights)
    mean = sum(rates) / len(rates)
    return Balancing(repeat_factors=[r / mean for r in rates])


def loss_weight_tensor(weights: Mapping[int, float], num_classes: int) -> torch.Tensor:
    """A float ``(num_classes,)`` cross-entropy weight; classes without a weight get 1."""
    out = torch.ones(num_classes)
    for c, w in weights.items():
        if 0 <= c < num_classes:
            out[c] = w
    return out


# -- index streams ---------------------------------------------------------------------------


def epoch_indices(
    n: int, generator: torch.Generator, repeat_factors: Sequence[float] | None = None
) -> list[int]:
    """One epoch's shuffled image indices; with ``repeat_factors``, image ``i`` appears
    ``floor(r_i)`` times plus once more with probability ``frac(r_i)``."""
    if repeat_factors is None:
        return torch.randperm(n, generator=generator).tolist()
    factors = torch.tensor(repeat_factors, dtype=torch.float64)
    whole = factors.floor()
    extra = torch.rand(n, generator=generator, dtype=torch.float64) < factors - whole
    copies = (whole + extra).long()
    indices = torch.repeat_interleave(torch.arange(n), copies)
    return indices[torch.randperm(len(indices), generator=generator)].tolist()


def sampled_batches(
    n: int,
    batch_size: int,
    steps: int,
    seed: int,
    repeat_factors: Sequence[float] | None = None,
) -> Iterator[list[int]]:
    """``steps`` batches of indices, epoch after epoch, from a generator seeded with
    ``seed``. Uniform epochs (no ``repeat_factors``) drop their last partial batch;
    repeat-factor epochs vary in length and run on into the next one instead."""
    if repeat_factors is not None and (len(repeat_factors) != n or not sum(repeat_factors) > 0):
        raise ValueError(f"need {n} repeat factors with a positive sum, got {len(repeat_factors)}")
    generator = torch.Generator().manual_seed(seed)
    produced = 0
    pending: list[int] = []
    while produced < steps:
        order = epoch_indices(n, generator, repeat_factors)
        pending = pending + order if repeat_factors is not None else order
        first = 0
        while first + batch_size <= len(pending) and produced < steps:
            produced += 1
            yield pending[first : first + batch_size]
            first += batch_size
        pending = pending[first:]

"""Class-balancing samplers: hand-computed factors and weights, deterministic streams."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from robustness_harness.train.finetune import TrainRecipe
from robustness_harness.train.samplers import (
    SAMPLERS,
    ClassCounts,
    balancing,
    class_weights,
    image_factors,
    loss_weight_tensor,
    rfs_factors,
    sampled_batches,
    sampler_problem,
)

# four images: class 1 in three of them (f=3/4), classes 2 and 3 in one each (f=1/4)
LABELS = [[1], [1, 2, 1], [1], [3], []]
COUNTS = ClassCounts.from_labels(LABELS)


def test_class_counts() -> None:
    assert COUNTS.n_images == 5
    assert COUNTS.images_with == {1: 3, 2: 1, 3: 1}
    assert COUNTS.instances == {1: 4, 2: 1, 3: 1}
    assert COUNTS.fraction(1) == pytest.approx(0.6)


def test_rfs_repeat_factors_hand_example() -> None:
    # t = 0.4: r_1 = max(1, sqrt(0.4/0.6)) = 1; r_2 = r_3 = max(1, sqrt(0.4/0.2)) = sqrt(2)
    factors = rfs_factors(COUNTS, 0.4)
    assert factors == pytest.approx({1: 1.0, 2: math.sqrt(2), 3: math.sqrt(2)})
    # image factor = max over its classes; an image without objects repeats once
    images = image_factors(LABELS, factors)
    assert images == pytest.approx([1.0, math.sqrt(2), 1.0, math.sqrt(2), 1.0])
    plan = balancing(TrainRecipe(sampler="rfs", rfs_threshold=0.4), LABELS, loss_weights=True)
    assert plan.repeat_factors == pytest.approx(images) and plan.class_weights is None


def test_inverse_frequency_weights_and_scale() -> None:
    t = 0.4
    inv = class_weights("inv", COUNTS, threshold=t)
    assert inv == pytest.approx({1: math.sqrt(t / 0.6), 2: math.sqrt(2), 3: math.sqrt(2)})
    assert inv[1] < 1  # without the cap frequent classes can weigh less than 1
    cap = class_weights("inv_cap", COUNTS, threshold=t)
    assert cap == pytest.approx({1: 1.0, 2: math.sqrt(2), 3: math.sqrt(2)})
    # lam = 2: the inverse square root becomes the inverse frequency t / f_c
    assert class_weights("inv", COUNTS, threshold=t, lam=2) == pytest.approx(
        {1: t / 0.6, 2: 2.0, 3: 2.0}
    )
    assert class_weights("inv", COUNTS, threshold=t, lam=0) == pytest.approx(
        {1: 1.0, 2: 1.0, 3: 1.0}
    )


def test_effective_number_weights() -> None:
    beta = 0.5  # instances: class 1 four, classes 2 and 3 one each
    raw = {1: (1 - beta) / (1 - beta**4), 2: 1.0, 3: 1.0}
    expected = {c: 3 * w / sum(raw.values()) for c, w in raw.items()}
    weights = class_weights("ens", COUNTS, beta=beta)
    assert weights == pytest.approx(expected)
    assert sum(weights.values()) == pytest.approx(3)
    scaled = class_weights("ens", COUNTS, beta=beta, lam=2)
    raw2 = {c: w**2 for c, w in raw.items()}
    assert scaled == pytest.approx({c: 3 * w / sum(raw2.values()) for c, w in raw2.items()})


def test_weighting_samplers_are_loss_weights_for_classification_rates_for_detection() -> None:
    recipe = TrainRecipe(sampler="inv", rfs_threshold=0.4)
    cls_plan = balancing(recipe, LABELS, loss_weights=True)
    assert cls_plan.repeat_factors is None
    assert cls_plan.class_weights == pytest.approx(class_weights("inv", COUNTS, threshold=0.4))
    det_plan = balancing(recipe, LABELS, loss_weights=False)
    assert det_plan.class_weights is None
    rates = image_factors(LABELS, class_weights("inv", COUNTS, threshold=0.4))
    mean = sum(rates) / len(rates)
    assert det_plan.repeat_factors == pytest.approx([r / mean for r in rates])
    assert sum(det_plan.repeat_factors) == pytest.approx(len(LABELS))


def test_loss_weight_tensor_fills_missing_classes_with_one() -> None:
    assert loss_weight_tensor({0: 2.0, 2: 0.5, 9: 3.0}, 4).tolist() == [2.0, 1.0, 0.5, 1.0]


def test_uniform_batches_are_epoch_permutations_and_seeded() -> None:
    batches = list(sampled_batches(10, 3, 6, seed=4))
    assert len(batches) == 6 and all(len(b) == 3 for b in batches)
    for epoch in (batches[:3], batches[3:]):  # 3 batches per epoch, the 10th image dropped
        flat = [i for b in epoch for i in b]
        assert len(set(flat)) == 9
    assert batches == list(sampled_batches(10, 3, 6, seed=4))
    assert batches != list(sampled_batches(10, 3, 6, seed=5))


def test_repeat_factor_stream_matches_factors_in_expectation() -> None:
    factors = [1.0, 2.5, 0.5, 1.5]
    n_batches = 500
    counts = Counter(
        i for b in sampled_batches(4, 5, n_batches, seed=0, repeat_factors=factors) for i in b
    )
    total = sum(counts.values())
    for i, r in enumerate(factors):
        assert counts[i] / total == pytest.approx(r / sum(factors), abs=0.03)
    # deterministic from the seed
    first = list(sampled_batches(4, 5, 20, seed=3, repeat_factors=factors))
    assert first == list(sampled_batches(4, 5, 20, seed=3, repeat_factors=factors))
    assert first != list(sampled_batches(4, 5, 20, seed=2, repeat_factors=factors))


def test_sampled_batches_rejects_wrong_factors() -> None:
    with pytest.raises(ValueError, match="repeat factors"):
        next(sampled_batches(3, 2, 1, 0, repeat_factors=[1.0, 1.0]))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sampler": "rsf"}, "sampler"),
        ({"sampler": "rfs"}, "rfs_threshold"),
        ({"sampler": "rfs", "rfs_threshold": 0.0}, "rfs_threshold"),
        ({"sampler": "uniform", "rfs_threshold": 0.1}, "rfs_threshold"),
        ({"sampler": "ens"}, "beta"),
        ({"sampler": "ens", "beta": 1.0}, "beta"),
        ({"sampler": "ens", "beta": 0.0}, "beta"),
        ({"sampler": "inv", "rfs_threshold": 0.1, "beta": 0.9}, "beta"),
        ({"sampler": "inv", "rfs_threshold": 0.1, "lam": -1.0}, "lam"),
        ({"sampler": "uniform", "lam": 2.0}, "lam"),
    ],
)
def test_exception_bad_sampler_settings(kwargs: dict, field: str) -> None:
    settings = {"sampler": "uniform", "rfs_threshold": None, "beta": None, "lam": 1.0} | kwargs
    problem = sampler_problem(**settings)
    assert problem is not None and problem.field == field and problem.hint
    with pytest.raises(ValueError, match=f"^{field}: "):
        TrainRecipe(**kwargs)


def test_every_sampler_has_a_valid_setting() -> None:
    needs = {"rfs": "rfs_threshold", "inv": "rfs_threshold", "inv_cap": "rfs_threshold"}
    for sampler in SAMPLERS:
        kwargs = {needs[sampler]: 0.1} if sampler in needs else {}
        if sampler == "ens":
            kwargs = {"beta": 0.9}
        recipe = TrainRecipe(sampler=sampler, **kwargs)
        plan = balancing(recipe, LABELS, loss_weights=False)
        assert (plan.repeat_factors is None) == (sampler == "uniform")
        assert all(r > 0 for r in plan.repeat_factors or [1.0])
        assert torch.isfinite(torch.tensor(plan.repeat_factors or [1.0])).all()

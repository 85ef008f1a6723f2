"""Fine-tune parameters are defined once: ``FinetuneSpec`` (the suite's ``finetune:``)
takes ``TrainRecipe``'s defaults, and the recipe is built from it by field name."""

from __future__ import annotations

import dataclasses

from robustness_harness.suite import FinetuneSpec
from robustness_harness.train.finetune import RECIPE_DEFAULTS, TrainRecipe, recipe_from


def test_every_finetune_field_is_a_recipe_field_with_its_default() -> None:
    recipe_fields = {f.name for f in dataclasses.fields(TrainRecipe)}
    spec = FinetuneSpec()
    for name in FinetuneSpec.model_fields:
        assert name in recipe_fields, f"finetune.{name} is not a TrainRecipe field"
        if name not in ("seed", "adversarial"):  # None: the variant's seed; no attack
            assert getattr(spec, name) == getattr(RECIPE_DEFAULTS, name), name


def test_recipe_takes_every_set_field_and_the_variant_seed() -> None:
    spec = FinetuneSpec.model_validate(
        {
            "epochs": 3,
            "lr": 0.01,
            "batch_size": 4,
            "sampler": "rfs",
            "rfs_threshold": 0.2,
            "augment": "naturalistic",
            "adversarial": "fgsm",
            "max_steps": 7,
        }
    )
    recipe = recipe_from(spec, seed=11)
    assert (recipe.epochs, recipe.lr, recipe.batch_size, recipe.max_steps) == (3, 0.01, 4, 7)
    assert (recipe.sampler, recipe.rfs_threshold, recipe.augment) == ("rfs", 0.2, "naturalistic")
    assert recipe.adversarial is not None and recipe.adversarial.method == "fgsm"
    assert recipe.seed == 11
    assert recipe_from(spec.model_copy(update={"seed": 5}), seed=11).seed == 5
    # fields a suite cannot set keep the recipe's defaults
    assert recipe.warmup_steps == RECIPE_DEFAULTS.warmup_steps
    assert recipe.hflip == RECIPE_DEFAULTS.hflip

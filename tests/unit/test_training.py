"""The training loop: the shipped recipe runs, is deterministic, leaks no RNG state."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from robustness_harness.data.builtin import toydrive_dataset
from robustness_harness.inference.evaluate import predict_detections
from robustness_harness.train.finetune import load_training_set, total_steps, train_detector
from robustness_harness.train.samplers import ClassCounts, balancing, rfs_factors
from robustness_harness_models.toydrive import RECIPE, build_toydrive_fcos


@pytest.fixture(scope="module")
def tiny_toydrive(tmp_path_factory: pytest.TempPathFactory):
    return toydrive_dataset(tmp_path_factory.mktemp("td"), n_train=16, n_val=8)


def _trained(data, seed: int, steps: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_toydrive_fcos()
    recipe = replace(RECIPE, batch_size=4, max_steps=steps, seed=seed)
    train_detector(model, load_training_set(data), recipe)
    return model


@pytest.mark.slow
def test_shipped_recipe_runs_a_few_steps_and_lowers_the_loss(tiny_toydrive) -> None:
    data = tiny_toydrive["train"]
    torch.manual_seed(0)
    model = build_toydrive_fcos()
    recipe = replace(RECIPE, batch_size=4, max_steps=12, lr=3e-3)
    lines: list[str] = []
    result = train_detector(model, load_training_set(data), recipe, progress=lines.append)
    assert result.steps == 12
    assert lines and lines[-1].startswith("step 12/12")
    first_loss = float(lines[0].split("loss ")[1].split()[0])
    assert result.final_loss < first_loss


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_differs(tiny_toydrive) -> None:
    data = tiny_toydrive["train"]
    a, b, c = _trained(data, 0), _trained(data, 0), _trained(data, 1)
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    assert any(
        not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)
    )


@pytest.mark.slow
def test_training_leaves_global_rng_untouched(tiny_toydrive) -> None:
    model = build_toydrive_fcos()
    items = load_training_set(tiny_toydrive["train"])
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_detector(model, items, replace(RECIPE, batch_size=4, max_steps=1, seed=5))
    assert torch.equal(torch.rand(3), expected)


def test_total_steps() -> None:
    assert total_steps(100, replace(RECIPE, epochs=2, batch_size=16)) == 12
    assert total_steps(100, replace(RECIPE, epochs=2, batch_size=16, max_steps=5)) == 5
    assert total_steps(3, replace(RECIPE, epochs=1, batch_size=16)) == 1  # batch shrinks to fit
    assert total_steps(0, RECIPE) == 0


def test_predictions_use_category_ids_and_drop_background(tiny_toydrive) -> None:
    data = tiny_toydrive["val"]
    torch.manual_seed(0)
    model = build_toydrive_fcos()
    with torch.no_grad():  # make the background slot win everywhere
        model.head.classification_head.cls_logits.bias[0] = 10.0
    preds = predict_detections(model, data, batch_size=4)
    assert preds.image_ids == sorted(data.image_ids)
    cats = {c["id"] for c in data.categories}
    for det in preds.by_image.values():
        assert set(det.category_ids.tolist()) <= cats
        assert det.boxes.shape[1] == 4 and det.boxes.dtype.name == "float32"


def test_predictions_round_trip(tmp_path: Path, tiny_toydrive) -> None:
    from robustness_harness.inference.predictions import DetectionPredictions

    torch.manual_seed(0)
    preds = predict_detections(build_toydrive_fcos(), tiny_toydrive["val"], batch_size=8)
    preds.save(tmp_path / "p.safetensors")
    loaded = DetectionPredictions.load(tmp_path / "p.safetensors")
    assert loaded.fingerprint == preds.fingerprint


@pytest.mark.slow
def test_balanced_naturalistic_adversarial_finetune_is_seeded(tiny_toydrive) -> None:
    items = load_training_set(tiny_toydrive["train"])
    recipe = replace(
        RECIPE,
        batch_size=2,
        max_steps=1,
        seed=3,
        sampler="rfs",
        rfs_threshold=0.5,
        augment="naturalistic",
        adversarial={"method": "fgsm", "eps": 2 / 255},
    )
    models = []
    for options in (recipe, recipe, replace(recipe, adversarial=None)):
        torch.manual_seed(0)
        model = build_toydrive_fcos()
        result = train_detector(model, items, options)
        assert result.steps == 1 and math.isfinite(result.final_loss)
        models.append(model.state_dict())
    a, b, c = models
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_rfs_on_detection_targets_repeats_images_with_rare_classes(tiny_toydrive) -> None:
    items = load_training_set(tiny_toydrive["train"])
    labels = [t["labels"].tolist() for _, t in items]
    counts = ClassCounts.from_labels(labels)
    rarest = min(counts.images_with, key=counts.images_with.get)
    plan = balancing(replace(RECIPE, sampler="rfs", rfs_threshold=0.5), labels, loss_weights=False)
    assert plan.repeat_factors is not None
    factors = rfs_factors(counts, 0.5)
    for image_labels, factor in zip(labels, plan.repeat_factors, strict=True):
        assert factor == max((factors[c] for c in image_labels), default=1.0)
        if rarest in image_labels:
            assert factor == pytest.approx(max(1.0, math.sqrt(0.5 / counts.fraction(rarest))))


def test_finetune_spec_maps_to_the_recipe() -> None:
    from robustness_harness.suite.schema import FinetuneSpec
    from robustness_harness.train.adversarial_finetune import AdversarialTraining
    from robustness_harness.train.finetune import recipe_from as _recipe

    spec = FinetuneSpec.model_validate(
        {
            "epochs": 2,
            "sampler": "inv_cap",
            "rfs_threshold": "1/10",
            "lam": 2,
            "augment": "naturalistic",
            "adversarial": {"method": "pgd", "eps": "2/255", "steps": 3},
        }
    )
    recipe = _recipe(spec, seed=7)
    assert (recipe.epochs, recipe.seed, recipe.sampler) == (2, 7, "inv_cap")
    assert (recipe.rfs_threshold, recipe.lam, recipe.augment) == (0.1, 2.0, "naturalistic")
    assert recipe.adversarial == AdversarialTraining("pgd", 2 / 255, 0.5 / 255, 3)
    fgsm = _recipe(FinetuneSpec.model_validate({"adversarial": "fgsm"}), seed=0)
    assert fgsm.adversarial == AdversarialTraining("fgsm")
    assert _recipe(FinetuneSpec(), seed=0).adversarial is None

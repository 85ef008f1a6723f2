"""User models and COCO data on disk go through the same path as the embedded default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from robustness_harness.data.toydrive import generate_toydrive
from robustness_harness.errors import HarnessError
from robustness_harness.run.session import HarnessOptions, HarnessSession
from robustness_harness_models.toydrive import WEIGHTS_FILE, build_toydrive_fcos

FCOS_FACTORY = "robustness_harness_models.toydrive:build_toydrive_fcos"


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small COCO dataset on disk (made by the toydrive generator, read as user data)."""
    return generate_toydrive(tmp_path_factory.mktemp("coco"), n_train=8, n_val=6)


def _suite(tmp_path: Path, coco: dict[str, Path], model: str, extra_variant: str = "") -> Path:
    text = f"""
suite: user
model: {model}
data:
  coco: {{images: {coco["images"]}, annotations: {coco["val"]}}}
  train: {{images: {coco["images"]}, annotations: {coco["train"]}}}
seed: 0
baseline: dense
variants:
  dense: {{}}
  sparse:
    compress: [{{prune: {{method: global_magnitude, sparsity: 0.5}}}}]
    finetune: {{epochs: 1, max_steps: 1, batch_size: 4}}
{extra_variant}
checks:
  clean_map_drop: {{metric: map, drop_max: 1.0}}
  worst_class_ap: {{metric: per_class_ap, reduce: worst_drop, max: 1.0}}
"""
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def _trained_weights(path: Path) -> None:
    """The shipped toydrive weights as a user's ``.pt`` state dict: drop gates need a
    baseline that scores above 0 (random weights score mAP 0, an error)."""
    torch.save(load_file(WEIGHTS_FILE), path)


def _session(tmp_path: Path) -> HarnessSession:
    return HarnessSession(
        HarnessOptions(cache_dir=str(tmp_path / "cache")), progress=lambda _: None
    )


@pytest.mark.slow
def test_factory_and_pt_checkpoint_end_to_end(tmp_path: Path, coco_dir: dict[str, Path]) -> None:
    _trained_weights(tmp_path / "weights.pt")
    model = f'{{factory: "{FCOS_FACTORY}", checkpoint: weights.pt}}'
    session = _session(tmp_path)
    suite = session.suite(_suite(tmp_path, coco_dir, model))
    outcome = session.run_check(suite, "sparse", "worst_class_ap")
    assert outcome.passed and outcome.n_images == 6
    assert set(outcome.per_class) == {
        c["name"] for c in json.loads(coco_dir["val"].read_text())["categories"]
    }
    # the checkpoint is cached: a second session builds nothing
    again = _session(tmp_path)
    lines: list[str] = []
    again.progress = lines.append
    again.run_check(again.suite(suite.path), "sparse", "clean_map_drop")
    assert not any(line.startswith(("built", "predicted")) for line in lines), lines


def test_factory_that_raises_names_the_field(tmp_path: Path, coco_dir, monkeypatch) -> None:
    (tmp_path / "badfactory.py").write_text(
        "def build(num_classes):\n    raise RuntimeError('boom')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save({}, tmp_path / "w.pt")
    session = _session(tmp_path)
    suite = session.suite(
        _suite(tmp_path, coco_dir, '{factory: "badfactory:build", checkpoint: w.pt}')
    )
    with pytest.raises(HarnessError) as err:
        session.run_check(suite, "sparse", "clean_map_drop")
    text = str(err.value)
    assert "model.factory" in text and "RuntimeError: boom" in text and "suite.yaml" in text


def test_factory_returning_non_module(tmp_path: Path, coco_dir, monkeypatch) -> None:
    (tmp_path / "notmodel.py").write_text("def build(num_classes):\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save({}, tmp_path / "w.pt")
    session = _session(tmp_path)
    suite = session.suite(
        _suite(tmp_path, coco_dir, '{factory: "notmodel:build", checkpoint: w.pt}')
    )
    with pytest.raises(HarnessError, match=r"returned int, not a torch\.nn\.Module"):
        session.run_check(suite, "sparse", "clean_map_drop")


def test_registered_architecture_without_weights(tmp_path: Path, coco_dir) -> None:
    session = _session(tmp_path)
    suite = session.suite(_suite(tmp_path, coco_dir, "{name: ssdlite320_mobilenet_v3_large}"))
    with pytest.raises(HarnessError) as err:
        session.run_check(suite, "sparse", "clean_map_drop")
    assert "model.checkpoint" in str(err.value) and "no trained weights" in str(err.value)


def test_checkpoint_of_another_architecture(tmp_path: Path, coco_dir) -> None:
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None, num_classes=7).state_dict(), tmp_path / "r18.pt")
    model = (
        '{factory: "robustness_harness_models.toydrive:build_toydrive_fcos", checkpoint: r18.pt}'
    )
    session = _session(tmp_path)
    suite = session.suite(_suite(tmp_path, coco_dir, model))
    with pytest.raises(HarnessError, match=r"r18\.pt"):
        session.run_check(suite, "sparse", "clean_map_drop")


def test_unknown_dataset_parameter_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "suite: s\nmodel: {name: toydrive-fcos}\n"
        "data: {name: toydrive, params: {n_trian: 5}}\n"
        "baseline: dense\nvariants: {dense: {}, other: {}}\n"
        "checks: {m: {metric: map, drop_max: 0.1}}\n"
    )
    session = _session(tmp_path)
    with pytest.raises(HarnessError) as err:
        session.dataset(session.suite(path))
    text = str(err.value)
    assert "data.params.n_trian" in text and "did you mean 'n_train'" in text


def test_empty_split_names_suite_field_and_existing_values(tmp_path: Path, coco_dir) -> None:
    torch.save(build_toydrive_fcos().state_dict(), tmp_path / "weights.pt")
    model = f'{{factory: "{FCOS_FACTORY}", checkpoint: weights.pt}}'
    path = _suite(tmp_path, coco_dir, model)
    path.write_text(
        path.read_text().replace(
            "checks:\n",
            "checks:\n  dusk_map: {metric: map, split: {timeofday: dusk}, drop_max: 0.1}\n",
        )
    )
    session = _session(tmp_path)
    with pytest.raises(HarnessError) as err:
        session.run_check(session.suite(path), "sparse", "dusk_map")
    text = str(err.value)
    assert "suite.yaml" in text and "checks.dusk_map.split" in text and "day" in text


@pytest.mark.slow
def test_variant_checkpoint_starts_from_other_weights(tmp_path: Path, coco_dir) -> None:
    """A variant's ``checkpoint`` replaces the base weights it starts from (a model
    compressed or retrained elsewhere); the same file as the base is the base model."""
    _trained_weights(tmp_path / "weights.pt")
    torch.manual_seed(1)
    state = build_toydrive_fcos().state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "retrained.safetensors")
    model = f'{{factory: "{FCOS_FACTORY}", checkpoint: weights.pt}}'
    extra = """  retrain: {checkpoint: retrained.safetensors}
  same: {checkpoint: weights.pt}
  retrain-pruned:
    checkpoint: retrained.safetensors
    compress: [{prune: {method: global_magnitude, sparsity: 0.5}}]
  retrain-int8:
    checkpoint: retrained.safetensors
    compress: [{quantize: {method: ptq_int8}}]
"""
    session = _session(tmp_path)
    suite = session.suite(_suite(tmp_path, coco_dir, model, extra))
    key = session.checkpoint_key
    assert key(suite, "same") == key(suite, "dense") != key(suite, "retrain")
    # quantizing given weights: its float twin is the given model itself
    source = session.float_variant(suite, "retrain-int8")
    assert source is not None and key(suite, source) == key(suite, "retrain")
    retrained = session.model(suite, "retrain").state_dict()
    pruned = session.model(suite, "retrain-pruned").state_dict()
    name = "head.classification_head.conv.0.weight"
    kept = pruned[name] != 0
    assert 0 < kept.float().mean() < 1
    assert torch.equal(pruned[name][kept], retrained[name][kept])
    dense = session.model(suite, "dense").state_dict()
    assert not torch.equal(retrained[name], dense[name])
    assert session.run_check(suite, "retrain", "clean_map_drop").baseline_value is not None


def test_variant_checkpoint_missing_names_the_field(tmp_path: Path, coco_dir) -> None:
    torch.save(build_toydrive_fcos().state_dict(), tmp_path / "weights.pt")
    model = f'{{factory: "{FCOS_FACTORY}", checkpoint: weights.pt}}'
    path = _suite(tmp_path, coco_dir, model, "  retrain: {checkpoint: nowhere.pt}\n")
    with pytest.raises(HarnessError) as err:
        _session(tmp_path).suite(path)
    text = str(err.value)
    assert "variants.retrain.checkpoint" in text and "nowhere.pt" in text

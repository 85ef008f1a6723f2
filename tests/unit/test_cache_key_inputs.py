"""Cache keys cover a factory's package source, calibration images and training data
(issue 16 part 3)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from robustness_harness.data.toydrive import generate_toydrive
from robustness_harness.run.session import HarnessOptions, HarnessSession
from robustness_harness.store.sources import source_digest, source_roots
from robustness_harness_models.toydrive import build_toydrive_fcos

MODEL_PY = """
from robustness_harness_models.toydrive import build_toydrive_fcos


def build(num_classes):
    model = build_toydrive_fcos(num_classes=num_classes)
    {extra}
    return model
"""
HALVE_INPUTS = "model.register_forward_pre_hook(lambda m, a: ([x * 0.5 for x in a[0]],))"


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_toydrive(tmp_path_factory.mktemp("coco"), n_train=8, n_val=4)


def _write_package(root: Path, name: str, extra: str = "pass") -> None:
    pkg = root / name
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(MODEL_PY.format(extra=extra))
    shutil.rmtree(pkg / "__pycache__", ignore_errors=True)
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def _suite(
    tmp_path: Path, coco: dict[str, Path], model: str, variants: str, data: str = ""
) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(
        f"""
suite: keys
model: {model}
data:
  coco: {{images: {coco["images"]}, annotations: {coco["val"]}}}
  train: {{images: {coco["images"]}, annotations: {coco["train"]}}}
{data}
baseline: dense
variants:
  dense: {{}}
{variants}
checks:
  clean_map: {{metric: map, drop_max: 1.0}}
"""
    )
    return path


def _session(tmp_path: Path, lines: list[str] | None = None) -> HarnessSession:
    progress = (lambda _line: None) if lines is None else lines.append
    return HarnessSession(HarnessOptions(cache_dir=str(tmp_path / "cache")), progress=progress)


def test_factory_package_edit_changes_keys_and_repredicts(
    tmp_path: Path, coco: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_package(tmp_path, "keyed_pkg")
    torch.manual_seed(0)
    torch.save(build_toydrive_fcos().state_dict(), tmp_path / "w.pt")
    model = '{factory: "keyed_pkg.model:build", checkpoint: w.pt}'
    variants = "  sparse: {compress: [{prune: {method: global_magnitude, sparsity: 0.3}}]}"
    path = _suite(tmp_path, coco, model, variants)
    first = _session(tmp_path)
    suite = first.suite(path)
    before = [first.checkpoint_key(suite, v) for v in ("dense", "sparse")]
    pred_before = first.prediction_key(suite, "dense", first.dataset(suite))
    scores_before = first.predictions(suite, "dense").by_image

    _write_package(tmp_path, "keyed_pkg", extra=HALVE_INPUTS)  # the user adds normalisation
    lines: list[str] = []
    second = _session(tmp_path, lines)
    suite = second.suite(path)
    after = [second.checkpoint_key(suite, v) for v in ("dense", "sparse")]
    assert before[0] != after[0] and before[1] != after[1]
    assert second.prediction_key(suite, "dense", second.dataset(suite)) != pred_before
    scores_after = second.predictions(suite, "dense").by_image
    assert any(line.startswith("predicted keys/dense") for line in lines), lines
    changed = [
        i
        for i in scores_before
        if scores_before[i].scores.shape != scores_after[i].scores.shape
        or not torch.allclose(
            torch.from_numpy(scores_before[i].scores), torch.from_numpy(scores_after[i].scores)
        )
    ]
    assert changed, "the edited factory's predictions were not recomputed"


def test_every_py_file_of_the_package_counts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_package(tmp_path, "digest_pkg")
    (tmp_path / "digest_pkg" / "sub").mkdir()
    helper = tmp_path / "digest_pkg" / "sub" / "helper.py"
    helper.write_text("X = 1\n")
    (root,) = source_roots("digest_pkg.model")
    assert root == (tmp_path / "digest_pkg").resolve()
    before = source_digest(root)
    (tmp_path / "digest_pkg" / "notes.txt").write_text("not source")
    assert source_digest(root) == before
    helper.write_text("X = 2\n")
    assert source_digest(root) != before


def test_single_module_factory_is_keyed_on_its_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "lonely_factory.py").write_text("def build(num_classes):\n    pass\n")
    import lonely_factory  # noqa: F401

    assert source_roots("lonely_factory") == [(tmp_path / "lonely_factory.py").resolve()]
    assert source_roots("torch.nn") == []  # stamped by version instead


def test_registered_model_is_keyed_on_its_package(tmp_path: Path, coco: dict[str, Path]) -> None:
    torch.save(build_toydrive_fcos().state_dict(), tmp_path / "w.pt")
    session = _session(tmp_path)
    suite = session.suite(_suite(tmp_path, coco, "{name: toydrive-fcos, checkpoint: w.pt}", ""))
    assert set(session.model_source(suite)) == {"models"}  # robustness_harness_models


def test_calibration_images_change_the_int8_key(tmp_path: Path, coco: dict[str, Path]) -> None:
    torch.save(build_toydrive_fcos().state_dict(), tmp_path / "w.pt")
    model = "{name: toydrive-fcos, checkpoint: w.pt}"
    variants = (
        "  int8a: {compress: [{quantize: {method: ptq_int8, calibration_images: 1}}]}\n"
        "  int8b: {compress: [{quantize: {method: ptq_int8, calibration_images: 2}}]}"
    )
    session = _session(tmp_path)
    suite = session.suite(_suite(tmp_path, coco, model, variants))
    assert session.checkpoint_key(suite, "int8a") != session.checkpoint_key(suite, "int8b")


def test_calibration_set_changes_the_int8_key(tmp_path: Path, coco: dict[str, Path]) -> None:
    torch.save(build_toydrive_fcos().state_dict(), tmp_path / "w.pt")
    doc = json.loads(coco["train"].read_text())
    reversed_doc = {**doc, "images": doc["images"][::-1]}  # other first images
    (tmp_path / "calib.json").write_text(json.dumps(reversed_doc))
    model = "{name: toydrive-fcos, checkpoint: w.pt}"
    variants = "  int8: {compress: [{quantize: {method: ptq_int8, calibration_images: 2}}]}"
    keys = []
    for data in ("", f"  calibration: {{images: {coco['images']}, annotations: calib.json}}"):
        session = _session(tmp_path)
        keys.append(
            session.checkpoint_key(
                session.suite(_suite(tmp_path, coco, model, variants, data)), "int8"
            )
        )
    assert keys[0] != keys[1]


def test_agp_without_finetune_is_keyed_on_the_training_set(
    tmp_path: Path, coco: dict[str, Path]
) -> None:
    torch.save(build_toydrive_fcos().state_dict(), tmp_path / "w.pt")
    doc = json.loads(coco["train"].read_text())
    last = doc["images"][-1]["id"]
    fewer = {
        **doc,
        "images": doc["images"][:-1],
        "annotations": [a for a in doc["annotations"] if a["image_id"] != last],
    }
    (tmp_path / "train2.json").write_text(json.dumps(fewer))
    model = "{name: toydrive-fcos, checkpoint: w.pt}"
    variants = (
        "  agp: {compress: [{prune: {method: global_magnitude, sparsity: 0.5, "
        "schedule: agp, steps: 2}}]}"
    )
    keys = []
    for train in (coco["train"], tmp_path / "train2.json"):
        path = _suite(tmp_path, coco, model, variants)
        path.write_text(path.read_text().replace(str(coco["train"]), str(train)))
        session = _session(tmp_path)
        keys.append(session.checkpoint_key(session.suite(path), "agp"))
    assert keys[0] != keys[1]

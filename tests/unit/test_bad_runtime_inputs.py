"""Bad inputs that only show when a gate runs: one HarnessError line naming the suite
file, the field and a fix, never a traceback from a worker or deep inside torch.

* images smaller than imagecorruptions' 32 px under a corruption check;
* a model that cannot take the data's image size (a Linear sized for 28 x 28 fed 32 x 32);
* ``pgd_map`` on a detector without training losses.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from robustness_harness.data.toysigns import TOYSIGNS_CLASSES
from robustness_harness.errors import CheckError, HarnessError, ModelInputError
from robustness_harness.inference.evaluate import predict_classes
from robustness_harness.perturb.attacks import detection_loss
from robustness_harness.perturb.corruptions import corrupt_many
from robustness_harness.run.session import HarnessOptions, HarnessSession
from tests.plugin.bad_models import FACTORIES

TINY_DATA = "{name: toysigns, split: val, params: {n_train: 40, n_val: 12, image_size: 24}}"
SIGNS_DATA = "{name: toysigns, split: val, params: {n_train: 40, n_val: 12}}"


def _suite(tmp_path: Path, model: str, data: str, checks: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(
        f"suite: bad\nmodel: {model}\ndata: {data}\nbaseline: dense\n"
        "variants:\n  dense: {}\n  sparse:\n"
        "    compress: [{prune: {method: global_magnitude, sparsity: 0.3}}]\n"
        f"checks:\n{checks}"
    )
    return path


@pytest.fixture
def session(
    tmp_path: Path, shared_data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> HarnessSession:
    (tmp_path / "userfactories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    options = HarnessOptions(cache_dir=str(tmp_path / "cache"), data_root=shared_data_root)
    return HarnessSession(options, progress=lambda _: None)


def _one_line(err: HarnessError, *parts: str) -> str:
    text = str(err)
    assert "\n" not in text and err.hint, text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"
    return text


# -- (1) corruptions on images smaller than 32 px ------------------------------------------
def test_corruptions_on_small_images_name_size_and_fix() -> None:
    images = {7: np.zeros((24, 20, 3), np.uint8)}
    with pytest.raises(CheckError) as info:
        corrupt_many(images.__getitem__, [7], [("fog", 1), ("gaussian_noise", 2)], seed=0)
    _one_line(
        info.value, "corruptions: ", "image 7 is 20x24 px", "fog, gaussian_noise", "32 px", "resize"
    )


@pytest.mark.slow
def test_corruption_check_on_small_images_is_one_line(session: HarnessSession, tmp_path) -> None:
    checks = "  noise: {metric: mpc, corruptions: [fog], severities: [1], ratio_min: 0}\n"
    suite = session.suite(_suite(tmp_path, "{name: toysigns-cnn}", TINY_DATA, checks))
    with pytest.raises(CheckError) as info:
        session.run_check(suite, "sparse", "noise")
    _one_line(
        info.value,
        "suite.yaml: checks.noise.corruptions: ",
        "is 24x24 px",
        "corruption fog needs",
        "data.transform",
    )


# -- (2) a model that cannot take the data's image size -----------------------------------
def test_first_forward_failure_names_the_batch_shape() -> None:
    class Images:
        image_ids: ClassVar[list[int]] = [1, 2, 3]

        def load_image(self, image_id: int) -> np.ndarray:
            return np.zeros((32, 32, 3), np.uint8)

        def __repr__(self) -> str:
            return "Images(3 images)"

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 4))
    with pytest.raises(ModelInputError) as info:
        predict_classes(model, Images(), batch_size=2)  # type: ignore[arg-type]
    _one_line(
        info.value,
        "model: model failed on a batch of shape (2, 3, 32, 32) from data Images(3 images): ",
        "mat1 and mat2 shapes cannot be multiplied",
        "model.input.size or data.transform",
    )


def test_model_for_another_image_size_is_one_line(session: HarnessSession, tmp_path) -> None:
    import userfactories  # type: ignore[import-not-found]

    weights = userfactories.flat28(len(TOYSIGNS_CLASSES)).state_dict()
    torch.save(weights, tmp_path / "w.pt")
    model = '{factory: "userfactories:flat28", task: classification, checkpoint: w.pt}'
    checks = "  accuracy: {metric: accuracy, drop_max: 1}\n"
    suite = session.suite(_suite(tmp_path, model, SIGNS_DATA, checks))
    with pytest.raises(ModelInputError) as info:
        session.run_check(suite, "dense", "accuracy")
    _one_line(info.value, "suite.yaml: model: model failed on a batch of shape (", ", 3, 32, 32)")


# -- (3) pgd_map on a detector without training losses --------------------------------------
@pytest.mark.usefixtures("userfactories")
@pytest.mark.parametrize(
    ("factory", "why"),
    [("eval_only", "raised TypeError"), ("no_losses", "returned list")],
)
def test_detector_without_losses(factory: str, why: str) -> None:
    import userfactories  # type: ignore[import-not-found]

    model = getattr(userfactories, factory)(num_classes=3)
    images = [torch.zeros(3, 32, 32)]
    targets = [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([1])}]
    with pytest.raises(CheckError) as info:
        detection_loss(model, images, targets)
    _one_line(info.value, "metric: ", why, "forward(images, targets)", "loss dict", "apply:")


@pytest.fixture
def userfactories(session: HarnessSession) -> None:
    """``userfactories`` importable (the ``session`` fixture puts it on sys.path)."""


@pytest.mark.slow
@pytest.mark.usefixtures("userfactories")
def test_pgd_map_without_losses_is_one_line(session: HarnessSession, tmp_path) -> None:
    import userfactories  # type: ignore[import-not-found]

    torch.manual_seed(0)
    torch.save(userfactories.EvalOnly().state_dict(), tmp_path / "w.pt")
    model = '{factory: "userfactories:eval_only", task: detection, checkpoint: w.pt}'
    data = "{name: toydrive, split: val, params: {n_train: 4, n_val: 3, image_size: 64}}"
    checks = "  pgd: {metric: pgd_map, eps: 1/255, steps: 1, images: 2, drop_max: 1}\n"
    suite = session.suite(_suite(tmp_path, model, data, checks))
    with pytest.raises(CheckError) as info:
        session.run_check(suite, "sparse", "pgd")
    _one_line(info.value, "suite.yaml: checks.pgd.metric: pgd_map needs a torchvision-style")

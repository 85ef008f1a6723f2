"""Bad inputs that only show when a gate runs, seen through `pytest suite.yaml`: each gate
fails with one line naming the suite file, the field and a fix, and no traceback (not
from a corruption worker, not from deep inside torch). Below the plugin:
tests/unit/test_bad_runtime_inputs.py."""

from __future__ import annotations

import pytest
import torch

from robustness_harness.data.toysigns import TOYSIGNS_CLASSES
from tests.plugin.bad_models import FACTORIES
from tests.plugin.suite_texts import DENSE_AND_SPARSE_30

pytestmark = pytest.mark.slow  # every test here builds or trains a variant

SUITE = "\nsuite: bad\nmodel: {model}\ndata: {data}\n" + DENSE_AND_SPARSE_30 + "{checks}\n"


@pytest.fixture
def user(suite_dir: pytest.Pytester) -> pytest.Pytester:
    """``userfactories`` (tests/plugin/bad_models.py) importable from the test directory,
    with weights for its classifier and its detector."""
    suite_dir.makepyfile(userfactories=FACTORIES)
    suite_dir.syspathinsert()
    import userfactories  # type: ignore[import-not-found]

    torch.manual_seed(0)
    flat = userfactories.flat28(len(TOYSIGNS_CLASSES))
    torch.save(flat.state_dict(), suite_dir.path / "flat.pt")
    torch.save(userfactories.EvalOnly().state_dict(), suite_dir.path / "det.pt")
    return suite_dir


def run(user: pytest.Pytester, *, failed: int, **fields: str) -> str:
    """Run the suite; every gate fails with a one-line harness error, no traceback."""
    (user.path / "suites" / "bad.yaml").write_text(SUITE.format(**fields))
    result = user.runpytest("suites", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=failed)
    out = result.stdout.str()
    assert "Traceback" not in out and "raise " not in out and "site-packages" not in out, out
    return out


@pytest.mark.parametrize(
    ("failed", "fields", "expected"),
    [
        pytest.param(
            1,
            {
                "model": "{name: toysigns-cnn}",
                "data": "{name: toysigns, split: val, params: {n_train: 40, n_val: 12, "
                "image_size: 24}}",
                "checks": "  fog: {metric: mpc, corruptions: [fog, snow], severities: [1], "
                "ratio_min: 0}",
            },
            [
                "bad.yaml: checks.fog.corruptions: image ",
                # corrupted images are made one corruption at a time: the first one is named
                "is 24x24 px, but corruption fog needs at least 32 px per side",
                "(fix: resize the images with data.transform",
            ],
            id="corruptions_on_images_under_32_px",
        ),
        pytest.param(
            3,  # min: 0 gates the baseline too
            {
                "model": '{factory: "userfactories:flat28", task: classification, '
                "checkpoint: ../flat.pt}",
                "data": "{name: toysigns, split: val, params: {n_train: 40, n_val: 12}}",
                "checks": "  accuracy: {metric: accuracy, drop_max: 1}\n"
                "  top: {metric: accuracy, min: 0}",
            },
            [
                "bad.yaml: model: model failed on a batch of shape (",
                ", 3, 32, 32) from data ClassificationData(",
                "mat1 and mat2 shapes cannot be multiplied",
                "(fix: set model.input.size or data.transform",
            ],
            id="model_that_cannot_take_the_image_size",
        ),
        pytest.param(
            1,
            {
                "model": '{factory: "userfactories:eval_only", task: detection, '
                "checkpoint: ../det.pt}",
                "data": "{name: toydrive, split: val, params: {n_train: 4, n_val: 3, "
                "image_size: 64}}",
                "checks": "  pgd: {metric: pgd_map, eps: 1/255, steps: 1, images: 2, drop_max: 1}",
            },
            [
                "bad.yaml: checks.pgd.metric: pgd_map needs a torchvision-style detector",
                "EvalOnly.forward(images, targets) raised TypeError",
                "(fix: drop the check for this model via `apply:`",
            ],
            id="pgd_map_on_a_detector_without_losses",
        ),
    ],
)
def test_gate_fails_with_one_line(
    user: pytest.Pytester, failed: int, fields: dict[str, str], expected: list[str]
) -> None:
    out = run(user, failed=failed, **fields)
    for fragment in expected:
        assert fragment in out

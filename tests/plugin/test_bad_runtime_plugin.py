"""Bad inputs that only show when a gate runs, seen through `pytest suite.yaml`: each gate
fails with one line naming the suite file, the field and a fix, and no traceback (not
from a corruption worker, not from deep inside torch). Below the plugin:
tests/unit/test_bad_runtime_inputs.py."""

from __future__ import annotations

import pytest
import torch

from robustness_harness.data.toysigns import TOYSIGNS_CLASSES
from tests.plugin.bad_models import FACTORIES

SUITE = """
suite: bad
model: {model}
data: {data}
baseline: dense
variants:
  dense: {{}}
  sparse:
    compress: [{{prune: {{method: global_magnitude, sparsity: 0.3}}}}]
checks:
{checks}
"""


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


def test_corruptions_on_images_under_32_px(user: pytest.Pytester) -> None:
    out = run(
        user,
        failed=1,
        model="{name: toysigns-cnn}",
        data="{name: toysigns, split: val, params: {n_train: 40, n_val: 12, image_size: 24}}",
        checks="  fog: {metric: mpc, corruptions: [fog, snow], severities: [1], ratio_min: 0}",
    )
    assert "bad.yaml: checks.fog.corruptions: image " in out
    # corrupted images are made one corruption at a time: the first one is named
    assert "is 24x24 px, but corruption fog needs at least 32 px per side" in out
    assert "(fix: resize the images with data.transform" in out


def test_model_that_cannot_take_the_image_size(user: pytest.Pytester) -> None:
    out = run(
        user,
        failed=3,  # min: 0 gates the baseline too
        model='{factory: "userfactories:flat28", task: classification, checkpoint: ../flat.pt}',
        data="{name: toysigns, split: val, params: {n_train: 40, n_val: 12}}",
        checks="  accuracy: {metric: accuracy, drop_max: 1}\n  top: {metric: accuracy, min: 0}",
    )
    assert "bad.yaml: model: model failed on a batch of shape (" in out
    assert ", 3, 32, 32) from data ClassificationData(" in out
    assert "mat1 and mat2 shapes cannot be multiplied" in out
    assert "(fix: set model.input.size or data.transform" in out


def test_pgd_map_on_a_detector_without_losses(user: pytest.Pytester) -> None:
    out = run(
        user,
        failed=1,
        model='{factory: "userfactories:eval_only", task: detection, checkpoint: ../det.pt}',
        data="{name: toydrive, split: val, params: {n_train: 4, n_val: 3, image_size: 64}}",
        checks="  pgd: {metric: pgd_map, eps: 1/255, steps: 1, images: 2, drop_max: 1}",
    )
    assert "bad.yaml: checks.pgd.metric: pgd_map needs a torchvision-style detector" in out
    assert "EvalOnly.forward(images, targets) raised TypeError" in out
    assert "(fix: drop the check for this model via `apply:`" in out

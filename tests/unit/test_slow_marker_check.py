"""The check in tests/conftest.py: a test that trains but is not marked `slow` fails with
one line naming the training entry point; a marked one, a 0-step run and a test that
trains nothing pass. The inner run is a subprocess, so its training is not this test's."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

TESTS = """
import numpy as np
import pytest
from torch import nn

from robustness_harness.train.classify import train_classifier  # looked up by name
from robustness_harness.train.finetune import TrainRecipe


class Images:
    image_ids = [0, 1, 2, 3]

    def load_image(self, image_id):
        return np.full((8, 8, 3), 40 * image_id, np.uint8)

    def label(self, image_id):
        return image_id % 2


def train(epochs=1):
    model = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 3, 2))
    recipe = TrainRecipe(epochs=epochs, batch_size=2, warmup_steps=1, max_steps=1)
    return train_classifier(model, Images(), recipe)


def test_unmarked_trains():
    assert train().steps == 1


@pytest.mark.slow
def test_marked_trains():
    assert train().steps == 1


def test_zero_epochs_is_not_training():
    assert train(epochs=0).steps == 0


def test_trains_nothing():
    assert TrainRecipe().epochs == 1
"""


def test_unmarked_training_fails_and_marked_training_passes(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini("[pytest]\nmarkers =\n    slow: trains or evaluates real models\n")
    pytester.makepyfile(test_inner=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_unmarked_trains _*",
            "this test trains (robustness_harness.train.classify.train_classifier) but is not "
            "marked slow: add @pytest.mark.slow",
            "*short test summary*",
            "FAILED test_inner.py::test_unmarked_trains - *",
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "def test_unmarked_trains" not in out, out

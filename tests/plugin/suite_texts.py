"""Suite YAML texts used by the plugin tests, and the builder that writes them."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest
import torch

from robustness_harness.data.toysigns import TOYSIGNS_CLASSES

TINY_FACTORY = """
from torch import nn


def tiny(num_classes):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))
"""


def write_tiny_classifier(pytester: pytest.Pytester) -> None:
    """``tinyfactory.py`` (an untrained 4-channel toysigns classifier, importable) and its
    seeded weights ``w.pt`` in the pytester directory: a model that needs no training."""
    pytester.makepyfile(tinyfactory=TINY_FACTORY)
    pytester.syspathinsert()
    import tinyfactory  # type: ignore[import-not-found]

    torch.manual_seed(0)
    torch.save(tinyfactory.tiny(len(TOYSIGNS_CLASSES)).state_dict(), pytester.path / "w.pt")


def tiny_classifier_suite(checks: str) -> str:
    """Suite ``tiny`` of ``write_tiny_classifier``'s model (``suites/`` → ``../w.pt``) on
    a small toysigns/val, with variant ``dense`` only; ``checks`` are indented YAML lines
    placed under ``checks:``."""
    return (
        "suite: tiny\n"
        'model: {factory: "tinyfactory:tiny", task: classification, checkpoint: ../w.pt}\n'
        "data: {name: toysigns, split: val, params: {n_train: 24, n_val: 12}}\n"
        "baseline: dense\n"
        "variants:\n"
        "  dense: {}\n"
        "checks:\n"
        f"{checks}"
    )


def pruned(name: str, method: str, sparsity: float, *keys: str) -> str:
    """YAML lines of variant ``name``: one prune step, then ``keys`` (e.g. ``runs: 2``)."""
    step = f"{{prune: {{method: {method}, sparsity: {sparsity}}}}}"
    lines = [f"  {name}:", f"    compress: [{step}]", *(f"    {key}" for key in keys)]
    return "".join(f"{line}\n" for line in lines)


def magnitude(percent: int, *keys: str) -> str:
    """Variant ``magnitude-<percent>``: global magnitude pruning to ``percent`` % sparsity."""
    return pruned(f"magnitude-{percent}", "global_magnitude", percent / 100, *keys)


def suite_text(name: str, variants: str, checks: str, *, seed: int | None = None) -> str:
    """A toydrive-fcos suite on toydrive/val whose baseline is variant ``dense``.

    ``variants`` and ``checks`` are indented YAML lines placed under ``variants:`` (after
    ``dense``) and ``checks:``.
    """
    seed_line = "" if seed is None else f"seed: {seed}\n"
    return (
        f"\nsuite: {name}\n"
        "model: {name: toydrive-fcos}\n"
        "data: {name: toydrive, split: val}\n"
        f"{seed_line}"
        "baseline: dense\n"
        "variants:\n"
        "  dense: {}\n"
        f"{variants}"
        "checks:\n"
        f"{checks}"
    )


# The variants of a `str.format` suite template (braces doubled): ``dense``, the
# baseline, and ``sparse`` (global magnitude pruning to 30 %); the checks follow.
DENSE_AND_SPARSE_30 = """\
baseline: dense
variants:
  dense: {{}}
  sparse:
    compress: [{{prune: {{method: global_magnitude, sparsity: 0.3}}}}]
checks:
"""


def junit_properties(path: Path) -> dict[str, dict[str, str]]:
    """``{test name: {property: value}}`` of a ``--junitxml`` file."""
    junit = ElementTree.parse(path)
    return {
        case.get("name", ""): {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        for case in junit.iter("testcase")
    }


def toysigns_suite(name: str, checks: str) -> str:
    """A toysigns-cnn suite on toysigns/val (360 training, 60 validation images) with
    variants ``dense`` (the baseline) and ``magnitude-50``; ``checks`` are indented YAML
    lines placed under ``checks:`` (an ``apply:`` block may follow them)."""
    return (
        f"\nsuite: {name}\n"
        "model: {name: toysigns-cnn}\n"
        "data: {name: toysigns, split: val, params: {n_train: 360, n_val: 60}}\n"
        "baseline: dense\n"
        "variants:\n"
        "  dense: {}\n"
        f"{magnitude(50)}"
        "checks:\n"
        f"{checks}"
    )


def _tiny_suite(drop_max: float, extra_variants: str = "") -> str:
    return suite_text(
        "tiny",
        magnitude(30, "finetune: {epochs: 1, max_steps: 2, batch_size: 4}") + extra_variants,
        f"  clean_map_drop: {{metric: map, drop_max: {drop_max}}}\n"
        "  worst_class_ap: {metric: per_class_ap, reduce: worst_drop, max: 1.0}\n",
        seed=0,
    )


GOOD_SUITE = _tiny_suite(0.5)

BAD_SUITE = suite_text(
    "bad",
    pruned("structured-70", "l1_filter", 0.7),
    "  clean_map_drop: {metric: map, drop_max: 0.02}\n",
    seed=0,
)

# l1-30 is not fine-tuned (mAP falls to ~0): this suite tests scheduling, not quality.
TWO_VARIANT_SUITE = _tiny_suite(1.0, pruned("l1-30", "l1_filter", 0.3))

# Every kind of gate outcome in one small suite (needs ERRORS_CONFTEST): magnitude-30
# passes clean_map_drop and teardown_error (whose teardown then raises), fails
# strict_map, errors on boom (its metric raises a HarnessError) and is skipped on
# skip_me (in setup); variant broken's compression raises a RuntimeError.
ERRORS_SUITE = suite_text(
    "errs",
    magnitude(30) + "  broken:\n    compress: [{prune: {method: explode}}]\n",
    """\
  clean_map_drop: {metric: map, drop_max: 1.0}
  strict_map: {metric: map, ratio_min: 2.0}
  boom: {metric: boom, increase_max: 1.0}
  skip_me: {metric: map, drop_max: 1.0}
  teardown_error: {metric: map, drop_max: 1.0}
apply:
  strict_map: [magnitude-30]
  boom: [magnitude-30]
  skip_me: [magnitude-30]
  teardown_error: [magnitude-30]
""",
    seed=0,
)

ERRORS_CONFTEST = """
import pytest
from pydantic import BaseModel

from robustness_harness import HarnessError, compression_method, metric


class NoParams(BaseModel):
    pass


@compression_method("prune", "explode", NoParams)
def explode(model, params, ctx):
    raise RuntimeError("layer conv3 has no weights\\n  second line of detail")


@metric("boom", task="detection", higher_is_better=False)
def boom(preds, targets) -> float:
    raise HarnessError("labels file is empty", file="labels.txt", hint="regenerate it")


def pytest_runtest_setup(item):
    if item.name == "skip_me":
        pytest.skip("skipped by the test conftest")


@pytest.hookimpl(trylast=True)  # after pytest's own teardown
def pytest_runtest_teardown(item):
    if item.name == "teardown_error":
        raise OSError("teardown could not release the device\\nmore")
"""

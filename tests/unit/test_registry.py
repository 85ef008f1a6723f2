"""The one registry module: four registries, a ``register_*`` decorator each, did-you-mean
errors and entry-point groups; the older decorator names still register."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import robustness_harness
from robustness_harness import registry
from robustness_harness.compress.base import MethodInfo
from robustness_harness.errors import UnknownNameError
from robustness_harness.metrics.base import MetricInfo
from robustness_harness.registry import (
    DATASETS,
    METHODS,
    METRICS,
    MODELS,
    Registry,
    register_compression,
    register_dataset,
    register_metric,
    register_model,
)
from robustness_harness.user_code import ModelEntry, as_model_entry


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Private copies of the four registries' contents, discarded after the test."""
    for reg in (METRICS, METHODS, MODELS, DATASETS):
        reg.names()  # load entry points (and so the built-ins) before copying
        monkeypatch.setattr(reg, "_items", dict(reg._items))
    yield


class _Params(BaseModel):
    strength: float = 0.5


def _unknown(reg: Registry[Any], name: str) -> UnknownNameError:
    with pytest.raises(UnknownNameError) as info:
        reg.get(name, file="suite.yaml", field="f")
    return info.value


def test_entry_point_groups_and_kinds_are_unchanged() -> None:
    assert (METRICS.kind, METRICS.group) == ("metric", "robustness_harness.metrics")
    assert (METHODS.kind, METHODS.group) == (
        "compression method",
        "robustness_harness.compression",
    )
    assert (MODELS.kind, MODELS.group) == ("model", "robustness_harness.models")
    assert (DATASETS.kind, DATASETS.group) == ("dataset", "robustness_harness.datasets")


def test_the_older_decorator_names_are_the_new_ones() -> None:
    assert registry.metric is register_metric
    assert registry.compression_method is register_compression
    assert robustness_harness.metric is register_metric
    assert robustness_harness.compression_method is register_compression
    for name in ("register_metric", "register_compression", "register_model", "register_dataset"):
        assert getattr(robustness_harness, name) is getattr(registry, name)


@pytest.mark.usefixtures("isolated")
def test_register_metric_and_did_you_mean() -> None:
    @register_metric("_test_reg_miss_rate", task="detection", higher_is_better=False)
    def miss_rate(preds: Any, data: Any, *, iou: float = 0.5) -> float:
        """Fraction missed."""
        return 0.25

    info = METRICS.get("_test_reg_miss_rate")
    assert isinstance(info, MetricInfo)
    assert (info.fn, info.task, info.higher_is_better) == (miss_rate, "detection", False)
    assert info.description == "Fraction missed." and list(info.params) == ["iou"]
    assert info(None, None).value == 0.25
    err = _unknown(METRICS, "_test_reg_mis_rate")
    assert "unknown metric '_test_reg_mis_rate'" in str(err)
    assert err.hint.startswith("did you mean '_test_reg_miss_rate'?")
    assert (err.file, err.field) == ("suite.yaml", "f")
    # the built-ins are there: a user metric may not take a built-in's name
    assert "map" in METRICS
    with pytest.raises(ValueError, match="metric 'map' is already registered"):
        register_metric("map")(lambda preds, data: 0.0)


@pytest.mark.usefixtures("isolated")
def test_register_compression_and_did_you_mean() -> None:
    @register_compression("prune", "_test_reg_shrink", _Params, uses="train")
    def shrink(model: Any, params: Any, ctx: Any) -> Any:
        return model

    info = METHODS.get("_test_reg_shrink")
    assert isinstance(info, MethodInfo)
    assert (info.kind, info.fn, info.params) == ("prune", shrink, _Params)
    assert info.data_use(_Params()) == "train"
    assert "l1_filter" in METHODS  # built-ins registered
    assert _unknown(METHODS, "_test_reg_shrnk").hint.startswith("did you mean '_test_reg_shrink'?")


@pytest.mark.usefixtures("isolated")
def test_register_model_and_did_you_mean() -> None:
    @register_model("_test_reg_tinynet")
    def tinynet(**kwargs: Any) -> Any:
        return "built"

    register_model("_test_reg_tinyclassifier")(ModelEntry(build=tinynet, task="classification"))
    assert as_model_entry(MODELS.get("_test_reg_tinynet")).build() == "built"
    assert as_model_entry(MODELS.get("_test_reg_tinyclassifier")).task == "classification"
    assert "toydrive-fcos" in MODELS  # from the robustness_harness.models entry points
    err = _unknown(MODELS, "_test_reg_tinynt")
    assert err.hint.startswith("did you mean '_test_reg_tinynet'?")
    assert "known models:" in err.hint


@pytest.mark.usefixtures("isolated")
def test_register_dataset_and_did_you_mean() -> None:
    @register_dataset("_test_reg_shapes")
    def shapes(root: Any, **params: Any) -> dict[str, Any]:
        return {"val": params}

    assert DATASETS.get("_test_reg_shapes")("root", n=3) == {"val": {"n": 3}}
    assert {"toydrive", "toysigns"} <= set(DATASETS.names())  # data/builtin.py entry points
    assert _unknown(DATASETS, "toydrve").hint.startswith("did you mean 'toydrive'?")
    with pytest.raises(ValueError, match="dataset '_test_reg_shapes' is already registered"):
        register_dataset("_test_reg_shapes")(lambda root: {})


def test_the_registry_module_loads_no_concept_module() -> None:
    code = (
        "import sys, robustness_harness.registry; "
        "print(sorted(m for m in sys.modules if m.startswith('robustness_harness')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == str(
        ["robustness_harness", "robustness_harness.errors", "robustness_harness.registry"]
    )

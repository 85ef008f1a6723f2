"""Fixtures for the unit tests: isolated registries holding fake metrics, methods, models."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, Literal

import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field

from robustness_harness.compress import METHODS
from robustness_harness.compress.base import MethodInfo
from robustness_harness.metrics import METRICS, metric
from robustness_harness.registry import DATASETS, MODELS, Registry


class FakePruneParams(BaseModel):
    """Allows extra keys on purpose: the spec must still reject unknown ones."""

    model_config = ConfigDict(extra="allow")

    sparsity: float = Field(ge=0, lt=1)
    schedule: Literal["oneshot", "agp"] = "oneshot"
    steps: int = Field(1, ge=1)


class FakeQuantParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calibration_images: int = Field(64, ge=1)


def _identity(model: Any, params: Any, ctx: Any) -> Any:
    return model


def _register_fake_metrics() -> None:
    @metric("map", task="detection")
    def fake_map(preds: Any, targets: Any, *, iou: float = 0.5, max_dets: int = 100) -> float:
        """Fake mAP."""
        return 0.0

    @metric("per_class_ap", task="detection", per_class=True)
    def fake_per_class(preds: Any, targets: Any) -> dict[str, float]:
        return {}

    @metric("latency_ms", higher_is_better=False)
    def fake_latency(preds: Any, targets: Any, *, batch_size: int = 1) -> float:
        return 0.0

    @metric("_test_needs_k")
    def fake_needs(preds: Any, targets: Any, *, k: int) -> float:
        return 0.0


@pytest.fixture
def spec_registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """Private copies of METRICS, METHODS, MODELS and DATASETS with fakes registered.

    Registered fakes: metrics ``map`` (params iou, max_dets), ``per_class_ap`` (per
    class), ``latency_ms`` (lower is better), ``_test_needs_k`` (required param ``k``);
    methods ``_test_prune`` and ``_test_quant``; model ``toydrive-fcos``; dataset
    ``toydrive``. Everything is discarded after the test. Returns the parameter
    models of the fake methods (``prune_params``, ``quant_params``).
    """
    registries: list[Registry[Any]] = [METRICS, METHODS, MODELS, DATASETS]
    for registry in registries:
        registry.names()  # load entry points before copying
        monkeypatch.setattr(registry, "_items", dict(registry._items))
    for name in ("map", "per_class_ap", "latency_ms"):
        METRICS._items.pop(name, None)
    _register_fake_metrics()
    METHODS.register(
        "_test_prune",
        MethodInfo(kind="prune", name="_test_prune", fn=_identity, params=FakePruneParams),
        replace=True,
    )
    METHODS.register(
        "_test_quant",
        MethodInfo(kind="quantize", name="_test_quant", fn=_identity, params=FakeQuantParams),
        replace=True,
    )
    MODELS.register("toydrive-fcos", lambda **kw: None, replace=True)
    DATASETS.register("toydrive", lambda **kw: None, replace=True)
    yield SimpleNamespace(prune_params=FakePruneParams, quant_params=FakeQuantParams)


GOOD_SUITE = """\
suite: toydrive-detector
description: Release gate for the compressed toy-drive detector.
model: {name: toydrive-fcos}
data: {name: toydrive, split: val}
seed: 0
baseline: dense
variants:
  dense: {}
  unstructured-80:
    compress:
      - prune: {method: _test_prune, sparsity: 0.8, schedule: agp, steps: 8}
    finetune: {epochs: 2}
  int8:
    compress: [{quantize: {method: _test_quant, calibration_images: 64}}]
checks:
  clean_map_drop: {metric: map, drop_max: 0.02}
  worst_class_ap: {metric: per_class_ap, reduce: worst_drop, max: 0.08}
  night_map: {metric: map, split: {timeofday: night}, drop_max: 0.03}
  strict_map: {metric: map, iou: 0.75, min: 0.5}
  latency: {metric: latency_ms, ratio_max: 0.7}
apply: {latency: [int8]}
"""
"""A valid suite using only implemented features (the DESIGN.md §2 example, trimmed)."""


@pytest.fixture
def good_suite_text(spec_registries: SimpleNamespace) -> str:
    """``GOOD_SUITE`` with the fake registries in place."""
    return GOOD_SUITE


@pytest.fixture
def two_threads() -> Iterator[None]:
    """Two torch threads during the test (the CI machine's cores), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)

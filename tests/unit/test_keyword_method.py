"""A compression method declares its parameters as a metric does: keyword-only parameters
with type hints, validated when the suite loads and passed as keyword arguments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from robustness_harness import CompressContext, Probability
from robustness_harness.errors import SpecError
from robustness_harness.registry import METHODS, register_compression
from robustness_harness.suite import parse_suite
from tests.unit.builders import suite_head

SUITE = suite_head("  kw: {compress: [{prune: {method: _kw_prune, %s}}]}\n") + (
    "  map: {metric: map, drop_max: 0.1}\n"
)


@pytest.fixture
def kw_prune() -> Iterator[list[dict[str, Any]]]:
    """Method ``_kw_prune`` (keyword-only parameters), recording what it is called with."""
    calls: list[dict[str, Any]] = []

    @register_compression("prune", "_kw_prune")
    def prune(
        model: nn.Module, ctx: CompressContext, *, sparsity: Probability, keep_bias: bool = True
    ) -> nn.Module:
        calls.append({"sparsity": sparsity, "keep_bias": keep_bias, "seed": ctx.seed})
        return model

    yield calls
    METHODS._items.pop("_kw_prune", None)


def _step(text: str) -> Any:
    return parse_suite(SUITE % text, "s.yaml").spec.variants["kw"].compress[0]


def test_keyword_parameters_are_validated_and_passed(kw_prune: list[dict[str, Any]]) -> None:
    step = _step("sparsity: 1/4")
    assert step.params.model_dump() == {"sparsity": 0.25, "keep_bias": True}
    model = nn.Linear(2, 2)
    info = METHODS.get("_kw_prune")
    assert info.keywords and info.data_use(step.params) is None
    ctx = CompressContext(example_inputs=torch.zeros(1, 3, 8, 8), seed=7)
    assert info.apply(model, step.params, ctx) is model
    assert kw_prune == [{"sparsity": 0.25, "keep_bias": True, "seed": 7}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "sparsity: 1.5",
            r"variants\.kw\.compress\[0\]\.prune\.sparsity: must be <= 1.0, got 1.5",
        ),
        ("sparsity: 0.5, keep: 1", r"unknown key 'keep'.*did you mean 'keep_bias'"),
        ("keep_bias: false", r"sparsity.*(missing|required)"),
    ],
)
def test_bad_keyword_parameters_are_one_line(
    kw_prune: list[dict[str, Any]], text: str, message: str
) -> None:
    with pytest.raises(SpecError, match=message) as info:
        _step(text)
    assert "\n" not in str(info.value)

"""One shape for every metric: its positional parameters name the parts of
``MetricInputs`` it takes (and give its kind); keyword-only ones are check parameters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from robustness_harness import MetricResult
from robustness_harness.errors import HarnessError
from robustness_harness.metrics.base import MetricInputs
from robustness_harness.registry import METRICS, register_metric


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Metric names registered by a test, removed afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        METRICS._items.pop(name, None)


def _register(names: list[str], name: str, fn: Any, **kwargs: Any) -> Any:
    register_metric(name, **kwargs)(fn)
    names.append(name)
    return METRICS.get(name)


def test_the_names_give_the_kind_and_the_arguments(names: list[str]) -> None:
    def on_preds(preds: Any, targets: Any, *, k: int = 1) -> float:
        return preds * 10 + targets + k

    def on_pair(preds: Any, baseline_preds: Any, data: Any) -> float:
        return preds - baseline_preds + data

    def on_model(ctx: Any) -> float:
        return ctx

    def on_grid(grid: Any) -> float:
        return grid

    def on_all(inputs: MetricInputs) -> MetricResult:
        return MetricResult(inputs.preds, note=str(inputs.data))

    inputs = MetricInputs(data=2, preds=3, baseline_preds=1, ctx=7, grid=5)
    kinds = {}
    for name, fn, want in [
        ("_t_preds", on_preds, 33.0),
        ("_t_pair", on_pair, 4.0),
        ("_t_model", on_model, 7.0),
        ("_t_grid", on_grid, 5.0),
    ]:
        info = _register(names, name, fn)
        kinds[name] = info.inputs
        assert info(inputs, **({"k": 1} if name == "_t_preds" else {})).value == want
    assert kinds == {
        "_t_preds": "predictions",
        "_t_pair": "pair",
        "_t_model": "model",
        "_t_grid": "corruption_grid",
    }
    whole = _register(names, "_t_all", on_all, inputs="pair")
    assert whole.inputs == "pair" and whole(inputs).note == "2"
    # direct calls with the function's own arguments still work (tests use them)
    assert METRICS.get("_t_preds")(3, 2, k=0).value == 32


def test_a_parameter_that_names_no_input_is_refused(names: list[str]) -> None:
    def bad(predictions: Any, data: Any) -> float:
        return 0.0

    with pytest.raises(HarnessError, match="parameter 'predictions' names no input"):
        _register(names, "_t_bad", bad)

    def model(ctx: Any) -> float:
        return 0.0

    with pytest.raises(HarnessError, match="inputs='pair' but its parameters make it a model"):
        _register(names, "_t_mismatch", model, inputs="pair")

    def resample(preds: Any, labels: Any) -> Any:
        return None

    def ok(preds: Any, data: Any) -> float:
        return 0.0

    with pytest.raises(HarnessError, match="resample function parameter 'labels'"):
        _register(names, "_t_bad_resample", ok, resample=resample)


def test_every_registered_metric_names_only_inputs() -> None:
    from robustness_harness.metrics.base import kind_of, unknown_inputs

    for name in METRICS:
        info = METRICS.get(name)
        assert not unknown_inputs(info.fn), name
        assert kind_of(info.fn) in (info.inputs, None), name

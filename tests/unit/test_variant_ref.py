"""Derived variants are ``VariantRef`` values (no encoded names), and no module of the
package keeps results in module-level containers."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path

import pytest

from robustness_harness.run.session import HarnessOptions, HarnessSession
from robustness_harness.run.variants import (
    VariantRef,
    as_ref,
    run_of,
    suite_variant,
    variant_spec,
)
from robustness_harness.suite import parse_suite
from tests.unit.builders import suite_head

SUITE = (
    suite_head(
        "  seeded: {seed: 3}\n"
        "  pruned-int8:\n"
        "    runs: 3\n"
        "    compress:\n"
        "      - {prune: {method: global_magnitude, sparsity: 0.5}}\n"
        "      - {quantize: {method: ptq_int8}}\n"
    )
    + "  map: {metric: map, drop_max: 0.1}\n"
)


def _suite():
    return parse_suite(SUITE, "s.yaml")


def test_a_ref_is_frozen_hashable_and_labelled() -> None:
    ref = VariantRef("dense", run=2, float_source=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.run = 3  # type: ignore[misc]
    assert {ref: 1}[VariantRef("dense", 2, True)] == 1
    assert str(ref) == "dense#run2~float"
    assert str(VariantRef("dense")) == "dense"
    assert as_ref("dense") == VariantRef("dense") and as_ref(ref) is ref
    assert run_of("dense", 0) == "dense"
    assert run_of(VariantRef("dense", float_source=True), 1) == VariantRef("dense", 1, True)
    assert suite_variant(ref) == "dense"


def test_variant_spec_derives_runs_and_float_sources() -> None:
    suite = _suite()
    spec = suite.spec.variants["pruned-int8"]
    assert variant_spec(suite, "pruned-int8") is spec
    assert variant_spec(suite, VariantRef("pruned-int8", run=1)).runs == 1
    float_source = variant_spec(suite, VariantRef("pruned-int8", float_source=True))
    assert [s.kind for s in float_source.compress] == ["prune"]
    assert float_source.runs == 3  # a float source of each run is derived from the run
    assert len(suite.spec.variants) == 3  # nothing is added to the suite


def test_session_seeds_runs_without_parsing_names(tmp_path: Path) -> None:
    session = HarnessSession(HarnessOptions(cache_dir=str(tmp_path)), progress=lambda _: None)
    suite = _suite()
    assert session.seed(suite, "seeded") == 3
    assert session.seed(suite, run_of("seeded", 2)) == 5
    source = session.float_variant(suite, "pruned-int8")
    assert source == VariantRef("pruned-int8", float_source=True)
    assert session.float_variant(suite, "dense") is None


ALLOWED = {
    "corruptions.py: _POOLS": "the process's worker pools, a resource shut down at exit",
    "schema.py: NOT_YET_VALUES": "a constant table (empty while no value is planned)",
}
EMPTY_CONTAINERS = ("dict", "list", "set", "OrderedDict", "defaultdict", "WeakValueDictionary")


def _module_level_containers(path: Path) -> list[str]:
    """``name = {}``-like module-level assignments: state that fills up at run time."""
    found = []
    for node in ast.parse(path.read_text()).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        empty = isinstance(value, ast.Dict | ast.List | ast.Set) and not (
            getattr(value, "keys", None) or getattr(value, "elts", None)
        )
        call = (
            isinstance(value, ast.Call)
            and not value.args
            and ast.unparse(value.func).split(".")[-1] in EMPTY_CONTAINERS
        )
        if empty or call:
            found += [f"{path.name}: {ast.unparse(t)}" for t in targets]
    return found


def test_no_module_level_memos() -> None:
    spec = importlib.util.find_spec("robustness_harness")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    found = [
        hit
        for path in sorted(root.rglob("*.py"))
        for hit in _module_level_containers(path)
        if hit not in ALLOWED
    ]
    assert not found, f"module-level containers filled at run time: {found}"

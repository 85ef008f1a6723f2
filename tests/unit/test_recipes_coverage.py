"""The shipped suites exercise every option of every built-in compression method (issue 17
part 7): each method is used by some variant, each choice of a ``Literal`` option is
used, and each option that is off by default (``None`` or empty) is turned on somewhere, so
no documented recipe is tested below the suites only and gated nowhere."""

from __future__ import annotations

import typing
from pathlib import Path

from robustness_harness.compress import METHODS
from robustness_harness.suite import load_suite

SUITES = sorted((Path(__file__).parents[2] / "suites").glob("*.yaml"))
SHARED = {"ignore"}
"""Options of the shared channel-removal plumbing (``compress/graph.py``): one method
using it exercises it for all."""


def _builtin_methods() -> list[str]:
    return sorted(
        name
        for name in METHODS.names()
        if METHODS.get(name).fn.__module__.startswith("robustness_harness.compress")
    )


def _required(method: str) -> set[tuple[str, str, object]]:
    """``(method, field, choice)`` for Literal choices, ``(method, field, "on")`` for
    options off by default."""
    need: set[tuple[str, str, object]] = set()
    for field, info in METHODS.get(method).params.model_fields.items():
        if typing.get_origin(info.annotation) is typing.Literal:
            need |= {(method, field, choice) for choice in typing.get_args(info.annotation)}
        elif info.default is None or info.default == ():
            need.add(("*" if field in SHARED else method, field, "on"))
    return need


def _used() -> set[tuple[str, str, object]]:
    used: set[tuple[str, str, object]] = set()
    for path in SUITES:
        for variant in load_suite(path).spec.variants.values():
            for step in variant.compress:
                used.add((step.method, "", "method"))
                defaults = type(step.params).model_fields
                for field, info in defaults.items():
                    value = getattr(step.params, field)
                    if typing.get_origin(info.annotation) is typing.Literal:
                        used.add((step.method, field, value))
                    elif value not in (None, ()):
                        used.add(("*" if field in SHARED else step.method, field, "on"))
    return used


def test_every_builtin_method_and_option_is_gated_by_a_suite() -> None:
    methods = _builtin_methods()
    assert {"global_magnitude", "l1_filter", "hydra", "ptq_int8"} <= set(methods)
    need = {(m, "", "method") for m in methods}
    for method in methods:
        need |= _required(method)
    missing = sorted(need - _used(), key=str)
    assert not missing, f"no suite variant uses: {missing}"


def test_the_rule_sees_a_missing_option() -> None:
    """The check can fail: HYDRA's DeepLIFT initialisation is required."""
    assert ("hydra", "init", "deeplift") in _required("hydra")
    assert ("hydra", "adversarial", "on") in _required("hydra")
    assert ("*", "ignore", "on") in _required("l1_filter")

"""Qualified module names in compression steps: ``modules:`` and ``ignore:`` patterns.

Both take names from ``model.named_modules()`` or ``fnmatch`` patterns (``backbone.*``),
relative to the user's model (without the ``model.input`` wrapper,
``robustness_harness.inference.input_contract``). ``IgnoreParams`` gives a method its ``ignore``
parameter; ``matching`` resolves patterns to the names of modules in the model as given.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_serializer
from torch import nn

from robustness_harness.errors import HarnessError
from robustness_harness.inference.input_contract import inner_model
from robustness_harness.registry import did_you_mean
from robustness_harness.suite.problems import SpecProblem

NAMES_HINT = "names from model.named_modules() or patterns such as backbone.*"


def check_module_names(value: Any) -> Any:
    """``ignore``: a list of module names (a single string is a common slip)."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise SpecProblem(
            f"ignore must be a list of module names, got {value!r}",
            hint=f"write ignore: [backbone.stem.0, ...] ({NAMES_HINT})",
        )
    return value


class IgnoreParams(BaseModel):
    """``ignore``: modules a method leaves as they are (names or fnmatch patterns; a
    pattern matching a container keeps everything inside it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ignore: tuple[str, ...] = ()

    _ignore = field_validator("ignore", mode="before")(check_module_names)

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        """Without ``ignore`` when empty: cache keys of steps without it stay as before."""
        data = handler(self)
        if isinstance(data, dict) and not data.get("ignore"):
            data.pop("ignore", None)
        return data


def wrapper_prefix(model: nn.Module) -> str:
    """Where the user's model sits in ``model`` (``"model."`` inside the input wrapper)."""
    root = inner_model(model)
    if root is model:
        return ""
    return next(f"{name}." for name, module in model.named_modules() if module is root)


def matching(
    model: nn.Module, patterns: Sequence[str], *, field: str, method: str = ""
) -> list[str]:
    """Names in ``model`` of every module (of the user's model) that one of ``patterns``
    matches, in registration order; a did-you-mean ``HarnessError`` (at ``field``) for a
    pattern that matches nothing."""
    if not patterns:
        return []
    root = inner_model(model)
    names = [name for name, _ in root.named_modules() if name]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            top = [name for name, _ in root.named_children()][:6]
            raise HarnessError(
                f"{method + ': ' if method else ''}no module of {type(root).__name__} "
                f"matches {pattern!r}",
                field=field,
                hint=f"{did_you_mean(pattern, names)}use names from model.named_modules() "
                f"(top level: {', '.join(top)}) or patterns such as {top[0] if top else 'head'}.*",
            )
    prefix = wrapper_prefix(model)
    return [prefix + n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def outermost(names: Sequence[str]) -> list[str]:
    """``names`` without those inside another one of them."""
    kept: list[str] = []
    for name in names:
        if not any(name.startswith(k + ".") for k in kept):
            kept.append(name)
    return kept


def inside(name: str, containers: Sequence[str]) -> bool:
    """Whether module ``name`` is one of ``containers`` or inside one."""
    return any(name == c or name.startswith(c + ".") for c in containers)

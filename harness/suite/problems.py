"""Turning validation failures into one-line problems: location, message and fix."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from robustness_harness.errors import HarnessError, SpecError, UnknownNameError
from robustness_harness.registry import did_you_mean

Loc = tuple[str | int, ...]

NUMBER_HINT = "write a number such as 0.02 or a fraction such as 2/255"

_MISSING_HINTS = {
    "suite": "add suite: <name of the suite>",
    "model": "add model: {name: <registered model>} or model: {factory: 'pkg.mod:fn'}",
    "data": "add data: {name: <dataset>} or data: {coco: {images: <dir>, annotations: <json>}}",
    "baseline": "add baseline: <name of the variant to compare against>",
    "variants": "add variants: {dense: {}} (one entry per model variant)",
    "checks": "add checks: {clean_map: {metric: map, drop_max: 0.02}}",
    "metric": "add metric: <registered metric>",
}


class SpecProblem(ValueError):
    """Raised inside validators; pydantic keeps the instance in the error's context.

    ``loc`` is appended to the location pydantic reports (so a model validator can
    point at one of its keys); ``unknown`` marks an unregistered name.
    """

    def __init__(
        self, message: str, *, hint: str | None = None, loc: Loc = (), unknown: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.loc = tuple(loc)
        self.unknown = unknown

    @property
    def error_class(self) -> type[HarnessError]:
        return UnknownNameError if self.unknown else SpecError

    def at(self, prefix: Loc) -> SpecProblem:
        """The same problem located under ``prefix``."""
        return SpecProblem(
            self.message, hint=self.hint, loc=(*prefix, *self.loc), unknown=self.unknown
        )

    @classmethod
    def from_harness_error(cls, err: HarnessError, loc: Loc = ()) -> SpecProblem:
        """Wrap a registry error (e.g. an unknown name) so that it gets a location."""
        return cls(err.message, hint=err.hint, loc=loc, unknown=isinstance(err, UnknownNameError))


def dotted(loc: Iterable[str | int]) -> str:
    """``("variants", "int8", "compress", 0, "prune")`` → ``variants.int8.compress[0].prune``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def unknown_key(key: object, known: Iterable[str], loc: Loc = ()) -> SpecProblem:
    """An unknown-key problem with a did-you-mean over ``known``."""
    names = list(known)
    return SpecProblem(
        f"unknown key '{key}'",
        hint=f"{did_you_mean(str(key), names)}known keys: {', '.join(names)}",
        loc=(*loc, str(key)),
    )


def describe_input(value: Any) -> str:
    """A short phrase for what the user wrote: ``a list``, ``the string 'abc'``."""
    if value is None:
        return "an empty value (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


def _bound_text(ctx: dict[str, Any]) -> str:
    for key, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if key in ctx:
            return f"{sign} {ctx[key]}"
    return "in range"


def problem_from_pydantic(error: dict[str, Any]) -> SpecProblem:
    """Translate one entry of ``ValidationError.errors()`` into a ``SpecProblem``."""
    loc: Loc = tuple(error.get("loc", ()))
    ctx = error.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, SpecProblem):
        return inner.at(loc)
    message, hint = _message_and_hint(error["type"], error.get("input"), ctx, loc)
    if message is None:
        message = error.get("msg", "invalid value")
    return SpecProblem(message, hint=hint, loc=loc)


def _message_and_hint(
    kind: str, value: Any, ctx: dict[str, Any], loc: Loc
) -> tuple[str | None, str]:
    got = describe_input(value)
    key = loc[-1] if loc else ""
    if kind == "missing":
        return f"required key '{key}' is missing", _MISSING_HINTS.get(str(key), f"add {key}: ...")
    if kind == "extra_forbidden":
        return f"unknown key '{key}'", "remove the key"
    if kind.startswith("int_"):
        return f"expected a whole number, got {got}", "write an integer such as 3"
    if kind.startswith("float_"):
        return f"expected a number, got {got}", NUMBER_HINT
    if kind.startswith("bool_"):
        return f"expected true or false, got {got}", "write true or false"
    if kind.startswith("string_type"):
        return f"expected a string, got {got}", "write a text value (quote it if needed)"
    if kind in ("string_too_short", "too_short") and ctx.get("min_length", 1) <= 1:
        return "must not be empty", "give at least one entry"
    if kind == "too_short":
        return f"needs at least {ctx['min_length']} entries", "add entries"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping (key: value), got {got}", "write it as {key: value, ...}"
    if kind == "list_type":
        return f"expected a list, got {got}", "write it as a list, e.g. [a, b]"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = _bound_text(ctx)
        return f"must be {bound}, got {value!r}", f"use a value {bound}"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        return f"invalid value {value!r}; expected {expected}", f"use one of {expected}"
    if kind == "string_pattern_mismatch":
        return f"{got} does not match {ctx.get('pattern')}", "rename it"
    return None, "fix the value (see the suite format, DESIGN.md section 2)"

"""Reading a ``results.json`` back: ``load_results`` checks a file that
``pytest --harness-report DIR`` wrote against ``results.schema.json`` and returns it as
``Results``; ``compare_results`` matches the gates of two runs (pytest-benchmark's
compare habit) and classifies each as regressed, fixed, changed, same, added or removed.

Only ``load_results`` touches the disk. A bad file raises a one-line ``HarnessError``
naming the file, the field and a fix. This module imports neither torch nor the run
machinery, so ``harness compare`` starts in a fraction of a second.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from robustness_harness.errors import HarnessError
from robustness_harness.store.json_files import parse_json

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
"""The schema ``robustness_harness.report.results`` writes to (its ``SCHEMA_PATH``)."""
KINDS = ("regressed", "fixed", "changed", "same", "added", "removed")
"""A compared gate's classification, in the order of the summary line."""
REL_TOL = 1e-12
"""Values closer than this (relative) are the same value."""
_REWRITE = "rerun pytest with --harness-report DIR to write it again"
_MAX_MESSAGE = 160

GateKey = tuple[str, str | None, str | None]
"""(suite, variant, check); variant and check are None for a suite file that failed to load."""


@dataclass(frozen=True)
class GateResult:
    """One gate of a run as results.json recorded it; ``record`` is the whole entry."""

    suite: str
    variant: str | None
    check: str | None
    metric: str | None
    status: str
    value: float | None
    baseline_value: float | None
    passed: bool | None
    message: str
    record: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> GateResult:
        """The gate of one ``items`` entry (already checked against the schema)."""
        return cls(
            suite=record["suite"],
            variant=record["variant"],
            check=record["check"],
            metric=record["metric"],
            status=record["status"],
            value=record["value"],
            baseline_value=record.get("baseline_value"),
            passed=record.get("passed"),
            message=record.get("message") or record.get("skip_reason") or "",
            record=record,
        )

    @property
    def key(self) -> GateKey:
        """What matches this gate across runs: (suite, variant, check)."""
        return (self.suite, self.variant, self.check)

    @property
    def name(self) -> str:
        """``suite/variant/check`` (just the suite file for one that failed to load)."""
        return gate_name(self.key)


@dataclass(frozen=True)
class Results:
    """A ``results.json`` read back: run stamps, the per-status ``summary``, pytest's
    ``counts`` and the gates in the file's order (sorted by suite, variant, check)."""

    path: Path
    format: int
    started: str
    finished: str
    stamps: Mapping[str, str]
    summary: Mapping[str, int]
    counts: Mapping[str, int]
    gates: tuple[GateResult, ...]

    def gate(self, suite: str, variant: str | None, check: str | None) -> GateResult:
        """The gate ``suite/variant/check``; ``KeyError`` when the run has none."""
        key = (suite, variant, check)
        for gate in self.gates:
            if gate.key == key:
                return gate
        raise KeyError(f"no gate {gate_name(key)} in {self.path}")


@dataclass(frozen=True)
class GateChange:
    """One gate of two runs: its status and value in ``a`` and ``b`` (None where the run
    lacks it) and how it changed (one of ``KINDS``)."""

    key: GateKey
    kind: str
    metric: str | None
    status_a: str | None
    status_b: str | None
    value_a: float | None
    value_b: float | None

    @property
    def name(self) -> str:
        """``suite/variant/check``."""
        return gate_name(self.key)

    @property
    def delta(self) -> float | None:
        """``value_b - value_a``, None unless both runs measured a value."""
        if self.value_a is None or self.value_b is None:
            return None
        return self.value_b - self.value_a


@dataclass(frozen=True)
class Comparison:
    """Every gate of two runs, sorted by (suite, variant, check)."""

    a: Path
    b: Path
    changes: tuple[GateChange, ...]

    def counts(self) -> dict[str, int]:
        """How many gates of each kind, every kind listed (in ``KINDS`` order)."""
        counts = dict.fromkeys(KINDS, 0)
        for change in self.changes:
            counts[change.kind] += 1
        return counts

    def summary(self) -> str:
        """``3 regressed, 1 fixed, 0 changed, 10 same, 0 added, 0 removed``."""
        return ", ".join(f"{n} {kind}" for kind, n in self.counts().items())

    @property
    def regressed(self) -> bool:
        """Whether ``b`` lost ground: a gate that passed in ``a`` fails or errors in
        ``b``, or a gate of ``a`` is missing from ``b``."""
        counts = self.counts()
        return bool(counts["regressed"] or counts["removed"])


def gate_name(key: GateKey) -> str:
    """``suite/variant/check``, leaving out the parts that are None."""
    return "/".join(part for part in key if part is not None)


# -- loading ------------------------------------------------------------------------------
def load_results(path: str | Path) -> Results:
    """Read and check the results.json at ``path`` (or inside the directory ``path``,
    as passed to ``--harness-report``); raises a one-line ``HarnessError`` naming the
    file, the field and a fix when it is missing, not JSON, of another format or breaks
    the schema."""
    path = results_path(path)
    doc = read_results_document(path)
    return Results(
        path=path,
        format=doc["format"],
        started=doc["started"],
        finished=doc["finished"],
        stamps=doc["stamps"],
        summary=doc["summary"],
        counts=doc["counts"],
        gates=tuple(GateResult.from_record(item) for item in doc["items"]),
    )


def results_path(path: str | Path) -> Path:
    """``path``, or the ``results.json`` inside it when it is a directory."""
    path = Path(path)
    return path / "results.json" if path.is_dir() else path


def read_results_document(path: str | Path) -> dict[str, Any]:
    """The JSON document of the results.json at ``path`` (or inside the directory),
    checked as ``load_results`` checks it."""
    path = results_path(path)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    doc = _parse(_read(path), path)
    _check_format(doc, path, schema["properties"]["format"]["const"])
    _check_schema(doc, path, schema)
    return doc


def _read(path: Path) -> str:
    """The file's text; a missing or unreadable file is a ``HarnessError``."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HarnessError(
            "no such results file",
            file=path,
            hint="pass the results.json that pytest --harness-report DIR wrote, or DIR",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise HarnessError(
            f"cannot read the results file: {reason}", file=path, hint=_REWRITE
        ) from None


def _parse(text: str, path: Path) -> Any:
    """``text`` as JSON; a syntax error names its line and column."""
    hint = f"the file is damaged or truncated; {_REWRITE}"
    return parse_json(text, path, HarnessError, invalid="invalid JSON", hint=hint)


def _check_format(doc: Any, path: Path, supported: int) -> None:
    """A results.json of another ``format`` (another harness version) is refused
    before the schema check, which would only say the number differs."""
    if not isinstance(doc, dict):
        raise HarnessError(
            f"the top level is a JSON {_json_type(doc)}, not an object",
            file=path,
            field="(top level)",
            hint="pass a results.json written by pytest --harness-report DIR",
        )
    found = doc.get("format", supported)
    if found != supported:
        stamps = doc.get("stamps")
        writer = stamps.get("harness") if isinstance(stamps, dict) else None
        by = f" (written by harness {writer})" if writer else ""
        raise HarnessError(
            f"format {found!r}{by} is not the format this harness reads ({supported})",
            file=path,
            field="format",
            hint="read it with the harness version that wrote it, or " + _REWRITE,
        )


def _check_schema(doc: Any, path: Path, schema: Mapping[str, Any]) -> None:
    """The first schema violation in document order, as a ``HarnessError``."""
    errors = sorted(Draft202012Validator(schema).iter_errors(doc), key=_document_order)
    if not errors:
        return
    error = errors[0]
    message = "required field is missing" if error.validator == "required" else error.message
    raise HarnessError(
        textwrap.shorten(message, _MAX_MESSAGE, placeholder=" ..."),
        file=path,
        field=_field(error),
        hint=f"results.json must follow harness/results.schema.json; {_REWRITE}",
    )


def _document_order(error: ValidationError) -> list[tuple[bool, Any]]:
    """Sort key of an error by its place in the document: ``items[2]`` before ``items[10]``
    (names and indexes never meet at one level, so the pairs always compare)."""
    return [(isinstance(part, str), part) for part in error.absolute_path]


def _field(error: ValidationError) -> str:
    """The JSON path of ``error`` (``items[3].status``), naming the missing field of a
    ``required`` error; ``(top level)`` for the document itself."""
    parts: list[str | int] = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        parts += missing[:1]
    rendered = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return rendered.removeprefix(".") or "(top level)"


def _json_type(value: Any) -> str:
    """JSON's name for the type of a parsed value."""
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "boolean" if isinstance(value, bool) else "number"


# -- comparing ----------------------------------------------------------------------------
def compare_results(a: Results, b: Results) -> Comparison:
    """Match the gates of runs ``a`` and ``b`` by (suite, variant, check) and classify
    each (see ``classify``); a run that lists one gate twice cannot be matched and
    raises a ``HarnessError`` naming both entries."""
    gates_a, gates_b = _by_key(a), _by_key(b)
    keys = sorted(gates_a.keys() | gates_b.keys(), key=_key_order)
    changes = (_change(key, gates_a.get(key), gates_b.get(key)) for key in keys)
    return Comparison(a.path, b.path, tuple(changes))


def _by_key(results: Results) -> dict[GateKey, GateResult]:
    """The gates of ``results`` by key; a key listed twice is an error."""
    found: dict[GateKey, tuple[int, GateResult]] = {}
    for index, gate in enumerate(results.gates):
        if gate.key in found:
            first = found[gate.key][0]
            raise HarnessError(
                f"gate {gate.name} is listed twice (items[{first}] and items[{index}])",
                file=results.path,
                field=f"items[{index}]",
                hint="give the suites distinct 'suite:' names so their gates can be matched",
            )
        found[gate.key] = (index, gate)
    return {key: gate for key, (_, gate) in found.items()}


def _key_order(key: GateKey) -> tuple[str, str, str]:
    """Sort key of a gate key: the order results.json lists gates in."""
    suite, variant, check = key
    return (suite, variant or "", check or "")


def _change(key: GateKey, a: GateResult | None, b: GateResult | None) -> GateChange:
    """One gate of both runs (at least one of ``a``, ``b`` is given)."""
    either = b or a
    assert either is not None
    return GateChange(
        key=key,
        kind=classify(a, b),
        metric=either.metric,
        status_a=a.status if a else None,
        status_b=b.status if b else None,
        value_a=a.value if a else None,
        value_b=b.value if b else None,
    )


def classify(a: GateResult | None, b: GateResult | None) -> str:
    """How gate ``a`` became ``b``: ``added`` / ``removed`` (only in ``b`` / ``a``),
    ``regressed`` (passed → failed or error), ``fixed`` (failed or error → passed),
    ``changed`` (another change of status, e.g. to skipped, or the same status with a
    value that differs by more than ``REL_TOL`` relative), else ``same``."""
    if a is None:
        return "added"
    if b is None:
        return "removed"
    broken = ("failed", "error")
    if a.status == "passed" and b.status in broken:
        return "regressed"
    if a.status in broken and b.status == "passed":
        return "fixed"
    if a.status != b.status or not same_value(a.value, b.value):
        return "changed"
    return "same"


def same_value(a: float | None, b: float | None) -> bool:
    """Whether two recorded values are equal within ``REL_TOL`` (None only equals None)."""
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)

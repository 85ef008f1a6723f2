"""Reading suite files: YAML (safe loader, no duplicate keys) → ``SuiteSpec``.

Every problem raises ``SpecError`` (``UnknownNameError`` for unregistered names) whose
``file`` is ``path:line`` when the line is known and whose ``field`` is a dotted path
such as ``variants.structured-50.compress[0].prune.sparsity``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path, PurePath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from robustness_harness.errors import HarnessError, SpecError
from robustness_harness.suite.problems import (
    Loc,
    SpecProblem,
    describe_input,
    dotted,
    problem_from_pydantic,
)
from robustness_harness.suite.schema import SuiteSpec

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Suite:
    """A validated suite file: where it is, its typed spec and the raw YAML mapping."""

    path: Path
    spec: SuiteSpec
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        """The suite's ``suite:`` name."""
        return self.spec.suite


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping defines the same key twice."""

    def __init__(self, key: str, first: yaml.Mark, second: yaml.Mark) -> None:
        problem = f"found duplicate key '{key}'"
        super().__init__("while constructing a mapping", first, problem, second)
        self.key = key
        self.first_line = first.line + 1


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], yaml.Node] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                    continue
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise DuplicateKeyError(
                        key_node.value, seen[ident].start_mark, key_node.start_mark
                    )
                seen[ident] = key_node
        return super().construct_mapping(node, deep=deep)


def load_suite(path: str | PathLike[str]) -> Suite:
    """Read and validate the suite file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("suite file not found", file=path, hint="check the path") from None
    except UnicodeDecodeError:
        raise SpecError(
            "the suite file is not UTF-8 text", file=path, hint="save it as UTF-8"
        ) from None
    except OSError as exc:
        raise SpecError(
            f"cannot read the suite file: {exc.strerror}", file=path, hint="check the path"
        ) from None
    return parse_suite(text, path)


def parse_suite(text: str, path: str | PathLike[str] = "<suite>") -> Suite:
    """Validate suite YAML ``text`` as if read from ``path`` (relative paths start there)."""
    path = Path(path)
    data, lines = _read_yaml(text, path)
    if data is None:
        raise SpecError(
            "the suite file is empty",
            file=path,
            hint="start with 'suite: <name>' and add model, data, baseline, variants and checks",
        )
    if not isinstance(data, dict):
        raise SpecError(
            f"the top level must be a mapping of keys (suite, model, data, ...), got "
            f"{describe_input(data)}",
            file=_where(path, lines.get(())),
            hint="write 'key: value' lines at the top level, not a list or a single value",
        )
    try:
        spec = SuiteSpec.model_validate(data, context={"base_dir": path.absolute().parent})
    except ValidationError as exc:
        raise _from_validation(exc, path, lines) from None
    return Suite(path=path, spec=spec, raw=data)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON for cache keys: sorted keys, no whitespace, models dumped as JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=canonical_json)
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"canonical_json cannot encode {type(obj).__name__}")


# --------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------
def _read_yaml(text: str, path: Path) -> tuple[Any, dict[Loc, int]]:
    """The constructed document and a map location → 1-based line."""
    loader = UniqueKeyLoader(text)
    lines: dict[Loc, int] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines = _node_lines(node)
        return loader.construct_document(node), lines
    except DuplicateKeyError as exc:
        raise _duplicate_error(exc, path, lines) from None
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, path) from None
    except yaml.YAMLError as exc:  # ReaderError: characters YAML does not allow
        raise SpecError(
            f"invalid YAML: {exc}".replace("\n", " "),
            file=path,
            hint="remove control characters and save the file as UTF-8 text",
        ) from None
    finally:
        loader.dispose()


def _node_lines(root: yaml.Node) -> dict[Loc, int]:
    lines: dict[Loc, int] = {(): root.start_mark.line + 1}
    stack: list[tuple[Loc, yaml.Node]] = [((), root)]
    visited: set[int] = set()
    while stack:
        loc, node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    child = (*loc, key.value)
                    lines.setdefault(child, key.start_mark.line + 1)
                    stack.append((child, value))
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                lines.setdefault((*loc, i), value.start_mark.line + 1)
                stack.append(((*loc, i), value))
    return lines


def _syntax_error(exc: yaml.MarkedYAMLError, path: Path) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "syntax error"
    if mark is None:
        return SpecError(f"invalid YAML: {problem}", file=path, hint="fix the YAML syntax")
    line, column = mark.line + 1, mark.column + 1
    if "\\t" in problem or "\t" in problem:
        hint = "indent with spaces; YAML does not allow tab characters"
    elif isinstance(exc, yaml.constructor.ConstructorError):
        hint = "remove the tag; suite files hold plain YAML values only"
    else:
        hint = f"fix the YAML syntax near line {line}: check indentation, quotes and brackets"
    where = f"line {line}, column {column}"
    if exc.context_mark is not None and exc.context_mark.line + 1 != line:
        where += f"; started at line {exc.context_mark.line + 1}"
    return SpecError(
        f"invalid YAML: {problem} ({where})",
        file=_where(path, line),
        hint=hint,
    )


def _duplicate_error(exc: DuplicateKeyError, path: Path, lines: dict[Loc, int]) -> SpecError:
    line = exc.problem_mark.line + 1 if exc.problem_mark else None
    candidates = [loc for loc, n in lines.items() if n == exc.first_line and loc[-1:] == (exc.key,)]
    field = dotted(max(candidates, key=len)) if candidates else exc.key
    return SpecError(
        f"duplicate key '{exc.key}' (first defined at line {exc.first_line})",
        file=_where(path, line),
        field=field,
        hint="remove or rename one of the two entries",
    )


# --------------------------------------------------------------------------------------
# validation errors
# --------------------------------------------------------------------------------------
def _where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


def _line_of(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _from_validation(exc: ValidationError, path: Path, lines: dict[Loc, int]) -> HarnessError:
    problems = [problem_from_pydantic(e) for e in exc.errors(include_url=False)]
    ordered = sorted(problems, key=lambda p: _line_of(p.loc, lines) or 0)
    rendered = [_render(p, path, lines) for p in ordered]
    first = rendered[0]
    if len(rendered) > 1:
        more = len(rendered) - 1
        first = type(first)(
            f"{first.message} (and {more} more problem{'s' if more > 1 else ''})",
            file=first.file,
            field=first.field,
            hint=first.hint,
        )
    first.problems = rendered  # type: ignore[attr-defined]
    return first


def _render(problem: SpecProblem, path: Path, lines: dict[Loc, int]) -> HarnessError:
    return problem.error_class(
        problem.message,
        file=_where(path, _line_of(problem.loc, lines)),
        field=dotted(problem.loc) or None,
        hint=problem.hint,
    )

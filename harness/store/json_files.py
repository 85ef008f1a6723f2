"""Parsing JSON files into the harness's one-line errors: a syntax error names the file,
its line and column and a fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robustness_harness.errors import HarnessError


def parse_json(text: str, path: Path, error: type[HarnessError], *, invalid: str, hint: str) -> Any:
    """``text`` (the contents of ``path``) as JSON; a syntax error raises ``error`` with
    the message ``<invalid>: <reason>``, the field ``line L column C`` and ``hint``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{invalid}: {exc.msg}",
            file=path,
            field=f"line {exc.lineno} column {exc.colno}",
            hint=hint,
        ) from None

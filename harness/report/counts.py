"""A gate's statuses and how pytest counts them (results.json ``summary`` and ``counts``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

STATUSES = ("passed", "failed", "error", "skipped")
"""A gate's ``status``: ``error`` when it could not be measured (an exception, a variant
that failed to build, a suite file that failed to load, an error in setup/teardown)."""
PYTEST_CATEGORIES = ("passed", "failed", "error", "skipped")
"""pytest's own counts (``error`` is its setup/teardown/collection errors); results.json's
``counts`` equal pytest's summary line."""


def pytest_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many tests pytest counts in each category (``passed``, ``failed``, ``error``,
    ``skipped``, ...) for ``records``: their ``outcomes``, one per pytest report that
    counted (a gate that passed and then errored in teardown counts twice, as pytest
    does). A record without ``outcomes`` counts once: an error in ``call`` as ``failed``
    (pytest's word for an exception in a test), other errors as ``error``."""
    counts = dict.fromkeys(PYTEST_CATEGORIES, 0)
    for record in records:
        for outcome in record.get("outcomes") or [_default_outcome(record)]:
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _default_outcome(record: Mapping[str, Any]) -> str:
    status = str(record.get("status"))
    if status == "error" and record.get("phase", "call") == "call":
        return "failed"
    return status


def describe_counts(counts: Mapping[str, int], *, zeros: bool = True) -> str:
    """``2 passed, 1 failed, 3 errors, 0 skipped`` (pytest's words); ``zeros=False``
    leaves out empty categories, as pytest's own summary line does."""
    parts = [
        f"{n} {'errors' if word == 'error' and n != 1 else word}"
        for word, n in counts.items()
        if n or zeros
    ]
    return ", ".join(parts) or "nothing"

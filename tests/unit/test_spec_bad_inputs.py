"""Every malformed suite in tests/bad_inputs/spec gives one self-contained error line.

Each file starts with ``# expect: <substring> | <substring> ...``: the substrings the
error must contain (the field path and a word of the fix).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from robustness_harness.errors import HarnessError, SpecError, UnknownNameError
from robustness_harness.suite import load_suite

BAD_DIR = Path(__file__).resolve().parents[1] / "bad_inputs" / "spec"
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))


def _expected(path: Path) -> list[str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect:"), f"{path.name} must start with '# expect: ...'"
    return [part.strip() for part in first.removeprefix("# expect:").split(" | ")]


def test_there_are_enough_bad_inputs() -> None:
    assert len(BAD_FILES) >= 20


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_exception_bad_suite(path: Path, spec_registries: object) -> None:
    with pytest.raises(HarnessError) as info:
        load_suite(path)
    err = info.value
    text = str(err)
    assert isinstance(err, SpecError | UnknownNameError)
    assert "\n" not in text, "the error must be one self-contained line"
    assert path.name in text
    assert err.hint, "every error names a fix"
    for part in _expected(path):
        assert part in text, f"{part!r} not in {text!r}"


def test_unknown_names_raise_unknown_name_error(spec_registries: object) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'map'"):
        load_suite(BAD_DIR / "metric_unknown.yaml")

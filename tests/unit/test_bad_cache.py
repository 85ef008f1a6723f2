"""A bad cache directory or a damaged entry: a one-line CacheError, or a rebuild that says
why in one line; never a traceback."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from robustness_harness.errors import CacheError
from robustness_harness.store.cache import Cache, cache_key

KEY = cache_key("bad-cache")


def build(tmp: Path) -> dict:
    (tmp / "model.safetensors").write_bytes(b"w" * 4096)
    (tmp / "structure.json").write_text("{}\n")
    return {"kind": "test"}


def one_line_cache_error(root: Path, expect: list[str]) -> None:
    with pytest.raises(CacheError) as info:
        Cache(root).get_or_build("ckpt", KEY, build)
    text = str(info.value)
    assert "\n" not in text and info.value.hint
    assert "--harness-cache" in text and "HARNESS_CACHE" in text
    for part in expect:
        assert part in text, f"{part!r} not in {text!r}"


def test_cache_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("not a directory")
    one_line_cache_error(tmp_path / "cache", [str(tmp_path / "cache"), "not a directory"])


def test_cache_root_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    one_line_cache_error(tmp_path / "file" / "cache", ["is not a directory"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_cache_root_not_writable(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        one_line_cache_error(root / "cache", ["is not writable"])
    finally:
        root.chmod(0o755)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_cache_root_where_nothing_can_be_created(tmp_path: Path) -> None:
    """/proc refuses new directories even to root: a real unwritable location."""
    one_line_cache_error(Path("/proc/harness-cache-test"), ["cannot create the harness cache"])


def test_kind_directory_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "ckpt").write_text("stray file")
    one_line_cache_error(tmp_path / "cache", ["cannot create the harness cache directory"])


def test_disk_full_while_writing_an_entry(tmp_path: Path) -> None:
    def full(tmp: Path) -> dict:
        (tmp / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "model.safetensors"))

    cache = Cache(tmp_path / "cache")
    with pytest.raises(CacheError) as info:
        cache.get_or_build("ckpt", KEY, full)
    text = str(info.value)
    assert "\n" not in text and "No space left on device" in text and "free disk space" in text
    assert f"cannot write cache entry ckpt/{KEY}" in text
    assert cache.verify() == [] and cache.get("ckpt", KEY) is None  # nothing half-written


def test_error_of_the_build_itself_is_not_blamed_on_the_cache(tmp_path: Path) -> None:
    def fails(_tmp: Path) -> dict:
        raise FileNotFoundError(errno.ENOENT, "No such file", "/elsewhere/data.json")

    with pytest.raises(FileNotFoundError):
        Cache(tmp_path / "cache").get_or_build("ckpt", KEY, fails)


DAMAGE = {
    "truncated_file": (
        lambda d: (d / "model.safetensors").write_bytes(b"w" * 100),
        "sha256 of 'model.safetensors' does not match meta.json",
    ),
    "file_missing": (
        lambda d: (d / "structure.json").unlink(),
        "file 'structure.json' is missing",
    ),
    "meta_not_json": (
        lambda d: (d / "meta.json").write_text('{"files": '),
        "meta.json is unreadable",
    ),
    "meta_missing": (lambda d: (d / "meta.json").unlink(), "meta.json is missing"),
    "meta_without_files": (
        lambda d: (d / "meta.json").write_text('{"created": "now"}'),
        "meta.json has no 'files' table",
    ),
    "meta_escaping_path": (
        lambda d: (d / "meta.json").write_text('{"files": {"../../etc/passwd": "00"}}'),
        "meta.json lists a bad file entry",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_entry_is_reported_then_rebuilt(tmp_path: Path, damage: str) -> None:
    events: list[str] = []
    cache = Cache(tmp_path / "cache", on_event=events.append)
    entry, _ = cache.get_or_build("ckpt", KEY, build)
    mutate, reason = DAMAGE[damage]
    mutate(entry.path)
    problems = cache.verify()
    assert len(problems) == 1 and reason in problems[0][1]
    again, built = cache.get_or_build("ckpt", KEY, build)
    assert built is True
    assert events == [f"cache entry ckpt/{KEY} was corrupt ({problems[0][1]}); rebuilding"]
    assert cache.verify() == []
    assert (again.path / "model.safetensors").read_bytes() == b"w" * 4096

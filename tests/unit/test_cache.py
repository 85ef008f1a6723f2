"""robustness_harness.store.cache in one process: keys, build/get, corruption, listing,
atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from robustness_harness.errors import CacheError
from robustness_harness.store import cache as cache_mod
from robustness_harness.store.cache import (
    Cache,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    cache_key,
    sha256_file,
)

KIND = "ckpt"
KEY = cache_key("model", 1)


class Step(BaseModel):
    method: str
    amount: float
    out: Path | None = None


def make_cache(tmp_path: Path) -> tuple[Cache, list[str]]:
    events: list[str] = []
    return Cache(tmp_path / "cache", on_event=events.append), events


def writer(payload: bytes = b"weights" * 1000, calls: list[int] | None = None):
    """A build function writing model.bin and sub/extra.txt."""

    def build(tmp: Path) -> dict:
        if calls is not None:
            calls.append(1)
        (tmp / "model.bin").write_bytes(payload)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "extra.txt").write_text("nested")
        return {"note": "hello", "n": len(calls or [])}

    return build


def scratch_dirs(cache: Cache, kind: str = KIND) -> list[str]:
    kind_dir = cache.root / kind
    if not kind_dir.is_dir():
        return []
    return sorted(p.name for p in kind_dir.iterdir() if p.name.startswith((".tmp-", ".trash-")))


# ------------------------------------------------------------------------- keys


def test_key_is_sha256_of_canonical_json() -> None:
    key = cache_key({"b": [1, 2.5, None, True], "a": "é"}, ("x", Path("/a/b")))
    canonical = '[{"a":"é","b":[1,2.5,null,true]},["x","/a/b"]]'
    assert key == hashlib.sha256(canonical.encode()).hexdigest()
    assert len(key) == 64


def test_key_ignores_dict_order_and_normalises_containers() -> None:
    assert cache_key({"a": 1, "b": {"c": 2, "d": 3}}) == cache_key({"b": {"d": 3, "c": 2}, "a": 1})
    assert cache_key((1, (2, 3))) == cache_key([1, [2, 3]])
    assert cache_key(Path("x/y.pt")) == cache_key("x/y.pt")


def test_key_distinguishes_values() -> None:
    values = [1, 1.0, True, "1", None, [1], [1, 2], [2, 1], {"a": 1}, {"a": 2}, 0.0, -0.0, 1e-300]
    assert len({cache_key(v) for v in values}) == len(values)
    assert cache_key("ab") != cache_key("a", "b")
    assert cache_key("a", "b") != cache_key("b", "a")


def test_key_handles_pydantic_models() -> None:
    step = Step(method="prune", amount=0.5, out=Path("o.pt"))
    assert cache_key(step) == cache_key({"amount": 0.5, "method": "prune", "out": "o.pt"})
    assert cache_key([step]) != cache_key([step.model_copy(update={"amount": 0.25})])


@pytest.mark.parametrize(
    ("value", "type_name"),
    [({1, 2}, "set"), (b"x", "bytes"), (object(), "object"), ({"a": [1, {2.0j}]}, "set")],
)
def test_key_rejects_unsupported_types(value: object, type_name: str) -> None:
    with pytest.raises(TypeError, match=type_name):
        cache_key("ok", value)


def test_key_rejects_non_str_dict_keys() -> None:
    with pytest.raises(TypeError, match="int"):
        cache_key({1: "a"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=6), st.randoms())
def test_key_is_order_independent_property(obj: dict, rnd: random.Random) -> None:
    items = list(obj.items())
    rnd.shuffle(items)
    assert cache_key(dict(items)) == cache_key(obj)


def test_key_is_stable_across_processes() -> None:
    code = (
        "from robustness_harness.store.cache import cache_key; "
        "print(cache_key({'b': 1, 'a': [0.1, 'é']}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == cache_key({"a": [0.1, "é"], "b": 1})


# ---------------------------------------------------------------- build and get


def test_get_or_build_builds_once(tmp_path: Path) -> None:
    cache, events = make_cache(tmp_path)
    calls: list[int] = []
    entry, built = cache.get_or_build(KIND, KEY, writer(calls=calls))
    assert built is True
    assert entry.path == cache.root / KIND / KEY == cache.entry_dir(KIND, KEY)
    assert entry.file("model.bin").read_bytes() == b"weights" * 1000
    assert entry.file("sub/extra.txt").read_text() == "nested"
    assert set(entry.meta["files"]) == {"model.bin", "sub/extra.txt"}
    assert entry.meta["files"]["model.bin"] == sha256_file(entry.file("model.bin"))
    assert entry.meta["note"] == "hello"
    assert {"created", "harness_version"} <= set(entry.meta)
    assert json.loads((entry.path / "meta.json").read_text()) == entry.meta

    again, built_again = cache.get_or_build(KIND, KEY, writer(calls=calls))
    assert (again, built_again) == (entry, False)
    assert len({entry, again}) == 1  # hashable despite the meta dict
    assert cache.get(KIND, KEY) == entry
    assert len(calls) == 1
    assert events == []
    assert scratch_dirs(cache) == []


def test_rebuild_replaces_entry(tmp_path: Path) -> None:
    cache, events = make_cache(tmp_path)
    calls: list[int] = []
    cache.get_or_build(KIND, KEY, writer(b"old", calls))
    entry, built = cache.get_or_build(KIND, KEY, writer(b"new", calls), rebuild=True)
    assert built is True
    assert len(calls) == 2
    assert entry.file("model.bin").read_bytes() == b"new"
    assert cache.get(KIND, KEY) == entry
    assert events and "rebuilding" in events[0]
    assert scratch_dirs(cache) == []


def test_failed_rebuild_keeps_old_entry(tmp_path: Path) -> None:
    cache, _ = make_cache(tmp_path)
    entry, _ = cache.get_or_build(KIND, KEY, writer(b"old"))

    def build(tmp: Path) -> dict:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build(KIND, KEY, build, rebuild=True)
    assert cache.get(KIND, KEY) == entry
    assert scratch_dirs(cache) == []


def test_rebuild_of_absent_entry_just_builds(tmp_path: Path) -> None:
    cache, events = make_cache(tmp_path)
    _, built = cache.get_or_build(KIND, KEY, writer(), rebuild=True)
    assert built is True
    assert events == []


def test_get_absent_creates_nothing(tmp_path: Path) -> None:
    cache, _ = make_cache(tmp_path)
    assert cache.get(KIND, KEY) is None
    assert not cache.root.exists()
    assert cache.ls() == [] and cache.verify() == [] and cache.clear() == 0


def test_failing_build_leaves_nothing(tmp_path: Path) -> None:
    cache, _ = make_cache(tmp_path)
    boom = RuntimeError("boom")

    def build(tmp: Path) -> dict:
        (tmp / "model.bin").write_bytes(b"half")
        raise boom

    with pytest.raises(RuntimeError) as info:
        cache.get_or_build(KIND, KEY, build)
    assert info.value is boom
    assert cache.get(KIND, KEY) is None
    assert scratch_dirs(cache) == []
    assert not cache.entry_dir(KIND, KEY).exists()


@pytest.mark.parametrize(
    ("result", "error", "match"),
    [
        (["not", "a", "dict"], TypeError, "must return a dict"),
        ({"files": {}}, ValueError, "reserved"),
        ({"x": {1, 2}}, TypeError, "set"),
    ],
)
def test_bad_build_result_leaves_nothing(
    tmp_path: Path, result: object, error: type[Exception], match: str
) -> None:
    cache, _ = make_cache(tmp_path)

    def build(tmp: Path) -> object:
        (tmp / "a").write_text("a")
        return result

    with pytest.raises(error, match=match):
        cache.get_or_build(KIND, KEY, build)  # type: ignore[arg-type]
    assert cache.get(KIND, KEY) is None
    assert scratch_dirs(cache) == []


def test_build_must_not_write_meta(tmp_path: Path) -> None:
    cache, _ = make_cache(tmp_path)

    def build(tmp: Path) -> dict:
        (tmp / "meta.json").write_text("{}")
        return {}

    with pytest.raises(ValueError, match=r"meta\.json"):
        cache.get_or_build(KIND, KEY, build)
    assert scratch_dirs(cache) == []


def test_entry_file_unknown_name(tmp_path: Path) -> None:
    cache, _ = make_cache(tmp_path)
    entry, _ = cache.get_or_build(KIND, KEY, writer())
    with pytest.raises(KeyError, match=r"missing\.bin"):
        entry.file("missing.bin")


@pytest.mark.parametrize("bad", ["", ".locks", "../x", "a/b", "-x", ".tmp-x"])
def test_bad_kind_or_key_rejected(tmp_path: Path, bad: str) -> None:
    cache, _ = make_cache(tmp_path)
    with pytest.raises(ValueError, match="must be"):
        cache.get(bad, KEY)
    with pytest.raises(ValueError, match="must be"):
        cache.get_or_build(KIND, bad, writer())


# ------------------------------------------------------------------- corruption


def _flip_byte(entry_dir: Path) -> None:
    path = entry_dir / "model.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _flip_nested(entry_dir: Path) -> None:
    (entry_dir / "sub" / "extra.txt").write_text("nesteD")


def _truncate_meta(entry_dir: Path) -> None:
    meta = entry_dir / "meta.json"
    meta.write_bytes(meta.read_bytes()[:20])


CORRUPTIONS = {
    "flip-byte": (_flip_byte, "sha256 of 'model.bin'"),
    "flip-nested": (_flip_nested, "sha256 of 'sub/extra.txt'"),
    "delete-file": (lambda d: (d / "model.bin").unlink(), "'model.bin' is missing"),
    "truncate-meta": (_truncate_meta, "meta.json is unreadable"),
    "garbage-meta": (lambda d: (d / "meta.json").write_bytes(b"\x00\xffgarbage"), "meta.json"),
    "meta-not-table": (lambda d: (d / "meta.json").write_text("[1, 2]"), "no 'files' table"),
    "delete-meta": (lambda d: (d / "meta.json").unlink(), "meta.json is missing"),
    "escaping-name": (
        lambda d: (d / "meta.json").write_text('{"files": {"../x": "0"}}'),
        "bad file entry",
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_entry_is_removed_and_rebuilt(tmp_path: Path, name: str) -> None:
    corrupt, reason = CORRUPTIONS[name]
    cache, events = make_cache(tmp_path)
    calls: list[int] = []
    entry, _ = cache.get_or_build(KIND, KEY, writer(calls=calls))
    corrupt(entry.path)

    assert cache.get(KIND, KEY) is None
    assert not entry.path.exists()
    assert len(events) == 1
    assert f"cache entry {KIND}/{KEY} was corrupt" in events[0]
    assert reason in events[0]

    rebuilt, built = cache.get_or_build(KIND, KEY, writer(calls=calls))
    assert built is True and len(calls) == 2
    assert cache.get(KIND, KEY) == rebuilt
    assert scratch_dirs(cache) == []


@pytest.mark.parametrize("name", ["flip-byte", "truncate-meta"])
def test_get_or_build_rebuilds_corrupt_entry_directly(tmp_path: Path, name: str) -> None:
    corrupt, reason = CORRUPTIONS[name]
    cache, events = make_cache(tmp_path)
    entry, _ = cache.get_or_build(KIND, KEY, writer())
    corrupt(entry.path)
    rebuilt, built = cache.get_or_build(KIND, KEY, writer())
    assert built is True
    assert rebuilt.file("model.bin").read_bytes() == b"weights" * 1000
    assert len(events) == 1 and reason in events[0] and "rebuilding" in events[0]


def test_get_without_verify_skips_hashes_but_checks_presence(tmp_path: Path) -> None:
    cache, events = make_cache(tmp_path)
    entry, _ = cache.get_or_build(KIND, KEY, writer())
    _flip_byte(entry.path)
    assert cache.get(KIND, KEY, verify=False) == entry
    (entry.path / "model.bin").unlink()
    assert cache.get(KIND, KEY, verify=False) is None
    assert "missing" in events[0]


def test_default_event_sink_is_logging(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = Cache(tmp_path / "cache")
    entry, _ = cache.get_or_build(KIND, KEY, writer())
    _flip_byte(entry.path)
    with caplog.at_level("WARNING", logger="robustness_harness.store.cache"):
        assert cache.get(KIND, KEY) is None
    assert "was corrupt" in caplog.text


# ------------------------------------------------------------------- stale dirs


def _dead_pid() -> int:
    code = "import os; print(os.getpid())"
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(proc.stdout)


def test_stale_scratch_dirs_are_cleaned_on_build(tmp_path: Path) -> None:
    cache, _ = make_cache(tmp_path)
    kind_dir = cache.root / KIND
    kind_dir.mkdir(parents=True)
    dead = kind_dir / f".tmp-{KEY}-{_dead_pid()}-0123abcd"
    old = kind_dir / f".trash-{KEY}-{os.getpid()}-0123abce"
    live = kind_dir / f".tmp-{KEY}-{os.getpid()}-0123abcf"
    other_key = kind_dir / f".tmp-{KEY}-x-{_dead_pid()}-0123abcd"
    for d in (dead, old, live, other_key):
        d.mkdir()
        (d / "half.bin").write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))

    problems = cache.verify()
    assert {p for p, _ in problems} == {dead, old, other_key}

    cache.get_or_build(KIND, KEY, writer())
    assert scratch_dirs(cache) == sorted([live.name, other_key.name])


def test_clear_removes_stale_scratch_of_any_key(tmp_path: Path) -> None:
    cache, _ = make_cache(tmp_path)
    cache.get_or_build(KIND, KEY, writer())
    dead = cache.root / KIND / f".tmp-other-{_dead_pid()}-0123abcd"
    dead.mkdir()
    assert cache.clear() == 1
    assert scratch_dirs(cache) == []


# ------------------------------------------------------------- ls/verify/clear


def test_ls_verify_clear(tmp_path: Path) -> None:
    cache, _ = make_cache(tmp_path)
    a, _ = cache.get_or_build("ckpt", "a", writer())
    b, _ = cache.get_or_build("ckpt", "b", writer())
    p, _ = cache.get_or_build("preds", "p", writer())
    assert cache.ls() == [a, b, p]
    assert cache.verify() == []

    _flip_byte(b.path)
    (p.path / "meta.json").write_text("nope")
    problems = cache.verify()
    assert [(type(x).__name__, "sha256" in r or "unreadable" in r) for x, r in problems] == [
        ("Entry", True),
        ("PosixPath", True),
    ]
    assert problems[0][0] == b and problems[1][0] == p.path
    assert cache.ls() == [a, b]  # ls does not verify, but needs meta
    assert b.path.exists()  # verify changes nothing

    assert cache.clear("preds") == 1
    assert [e.key for e in cache.ls()] == ["a", "b"]
    assert cache.clear() == 2
    assert cache.ls() == [] and cache.verify() == []
    assert (cache.root / "ckpt" / ".locks").is_dir()  # lock files are never deleted


# ------------------------------------------------------------------ root / env


def test_root_under_a_regular_file_is_rejected(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    root = blocker / "cache"
    with pytest.raises(CacheError) as info:
        Cache(root)
    message = str(info.value)
    assert str(root) in message and str(blocker) in message
    assert "HARNESS_CACHE" in message and "--harness-cache" in message


def test_root_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_text("")
    with pytest.raises(CacheError, match="not a directory"):
        Cache(root)


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: chmod 0o500 does not stop root from writing",
)
def test_read_only_root_is_rejected(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    try:
        with pytest.raises(CacheError, match="not writable"):
            Cache(ro / "cache")
    finally:
        ro.chmod(0o700)


def test_root_is_created_lazily(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    cache.get_or_build(KIND, KEY, writer())
    assert cache.get(KIND, KEY) is not None


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_CACHE", raising=False)
    assert Cache.from_env().root == tmp_path / ".harness-cache"
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "env"))
    assert Cache.from_env().root == tmp_path / "env"
    assert Cache.from_env(str(tmp_path / "cli")).root == tmp_path / "cli"
    monkeypatch.setenv("HARNESS_CACHE", "rel")
    assert Cache.from_env().root == tmp_path / "rel"  # absolute, fixed at construction


# ---------------------------------------------------------------- atomic writes


def test_atomic_writes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write_bytes(path, b"one")
    assert path.read_bytes() == b"one"
    atomic_write_text(path, "twö")
    assert path.read_text("utf-8") == "twö"
    atomic_write_json(path, {"b": 1, "a": [1]})
    assert path.read_text() == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_atomic_write_failure_keeps_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")

    def fail(*_: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(cache_mod.os, "replace", fail)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_bytes(path, b"new" * 1000)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_atomic_write_never_observed_partial(tmp_path: Path) -> None:
    path = tmp_path / "f"
    size = 2 << 20
    atomic_write_bytes(path, b"a" * size)
    stop = threading.Event()
    seen: set[tuple[int, bytes]] = set()

    def read_loop() -> None:
        while not stop.is_set():
            data = path.read_bytes()
            seen.add((len(data), bytes(set(data))))

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        for i in range(12):
            atomic_write_bytes(path, (b"b" if i % 2 else b"c") * size)
    finally:
        stop.set()
        reader.join()
    assert seen <= {(size, b"a"), (size, b"b"), (size, b"c")}
    assert len(seen) >= 2


def test_sha256_file_streams_large_files(tmp_path: Path) -> None:
    data = os.urandom((3 << 20) + 17)
    path = tmp_path / "big"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()

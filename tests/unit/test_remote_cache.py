"""The cache on shared storage, against a real S3 API server on 127.0.0.1: a second, empty
machine downloads instead of building, a killed upload is invisible, racing machines
commit one consistent entry, a damaged remote file is not trusted."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from robustness_harness.store.cache import Cache
from robustness_harness.store.remote import MANIFEST, RemoteStore, is_url
from tests.unit.processes import python, race
from tests.unit.s3_server import s3_server


@pytest.fixture(scope="module")
def bucket() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest.fixture
def remote_url(bucket: str, request: pytest.FixtureRequest) -> str:
    """A fresh prefix of the bucket per test."""
    return f"{bucket}/{request.node.name}"


def _build(tmp: Path) -> dict:
    (tmp / "model.bin").write_bytes(b"weights" * 1000)
    (tmp / "sub").mkdir()
    (tmp / "sub" / "extra.json").write_text('{"a": 1}')
    return {"steps": ["prune"]}


def _must_not_build(tmp: Path) -> dict:
    raise AssertionError("a machine with the remote entry must not build")


def test_url_locations() -> None:
    assert is_url("s3://b/p") and is_url("file:///mnt/shared") and not is_url("/mnt/cache")


def test_a_second_machine_downloads_instead_of_building(tmp_path: Path, remote_url: str) -> None:
    first = Cache(tmp_path / "a", remote=RemoteStore(remote_url))
    entry, built = first.get_or_build("ckpt", "k1", _build)
    assert built and first.downloads == 0
    store = RemoteStore(remote_url)
    manifest = store.manifest("ckpt", "k1")
    assert manifest is not None and manifest["meta"]["files"] == entry.files

    second = Cache(tmp_path / "b", remote=RemoteStore(remote_url))
    got, built = second.get_or_build("ckpt", "k1", _must_not_build)
    assert not built and second.downloads == 1
    assert got.files == entry.files and got.meta["steps"] == ["prune"]
    assert (got.path / "sub" / "extra.json").read_text() == '{"a": 1}'
    assert second.get_or_build("ckpt", "k1", _must_not_build)[0].path == got.path
    assert second.downloads == 1  # the local copy answers from now on

    third = Cache(tmp_path / "c", remote=RemoteStore(remote_url))
    assert third.get("ckpt", "k1") is not None and third.downloads == 1
    assert third.get("ckpt", "absent") is None


def test_from_env_reads_a_url_through_a_local_directory(
    tmp_path: Path, remote_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_LOCAL_CACHE", str(tmp_path / "local"))
    cache = Cache.from_env(remote_url)
    assert cache.root == tmp_path / "local" and cache.remote is not None
    assert remote_url in repr(cache)


def test_a_damaged_remote_file_is_not_trusted(tmp_path: Path, remote_url: str) -> None:
    Cache(tmp_path / "a", remote=RemoteStore(remote_url)).get_or_build("pred", "k", _build)
    store = RemoteStore(remote_url)
    upload = store.manifest("pred", "k")["upload"]  # type: ignore[index]
    store.fs.pipe_file(f"{store.root}/pred/k/{upload}/model.bin", b"tampered")
    calls = []

    def build(tmp: Path) -> dict:
        calls.append(1)
        return _build(tmp)

    cache = Cache(tmp_path / "b", remote=RemoteStore(remote_url))
    _, built = cache.get_or_build("pred", "k", build)
    assert built and calls == [1] and cache.downloads == 0


UPLOAD_THEN_DIE = """
import os, signal, sys
from pathlib import Path
from robustness_harness.store.cache import Cache
from robustness_harness.store.remote import RemoteStore

root, url = sys.argv[1:3]
store = RemoteStore(url)

def die(*args, **kwargs):  # killed after the files are up, before the manifest
    os.kill(os.getpid(), signal.SIGKILL)

store.fs.pipe_file = die

def build(tmp):
    (tmp / "model.bin").write_bytes(b"weights" * 1000)
    return {}

Cache(root, remote=store).get_or_build("ckpt", "killed", build)
"""

RACE = """
import json, os, sys, time
from pathlib import Path
from robustness_harness.store.cache import Cache
from robustness_harness.store.remote import RemoteStore

root, url, go = sys.argv[1:4]

def build(tmp):
    (tmp / "model.bin").write_bytes(f"built by {os.getpid()}".encode())
    return {"builder": os.getpid()}

cache = Cache(root, remote=RemoteStore(url))
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
entry, built = cache.get_or_build("ckpt", "raced", build)
print(json.dumps({"built": built, "files": entry.files}), flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX signals")
def test_an_upload_killed_before_its_manifest_is_invisible(tmp_path: Path, remote_url: str) -> None:
    proc = python(UPLOAD_THEN_DIE, tmp_path / "a", remote_url, env=os.environ.copy())
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    store = RemoteStore(remote_url)
    store.fs.invalidate_cache()
    assert store.fs.find(f"{store.root}/ckpt/killed")  # the files made it up ...
    assert store.manifest("ckpt", "killed") is None  # ... but were never committed
    fresh = Cache(tmp_path / "b", remote=RemoteStore(remote_url))
    assert fresh.get("ckpt", "killed") is None
    _, built = fresh.get_or_build("ckpt", "killed", _build)
    assert built


def test_racing_machines_commit_one_consistent_entry(tmp_path: Path, remote_url: str) -> None:
    go = tmp_path / "go"
    procs = [
        python(RACE, tmp_path / f"m{i}", remote_url, go, env=os.environ.copy()) for i in range(3)
    ]
    results = [json.loads(out) for out in race(procs, go)]
    store = RemoteStore(remote_url)
    manifest = store.manifest("ckpt", "raced")
    assert manifest is not None
    # whoever committed first, a new machine gets exactly that entry, verified
    reader = Cache(tmp_path / "reader", remote=RemoteStore(remote_url))
    entry = reader.get("ckpt", "raced")
    assert entry is not None and entry.files == manifest["meta"]["files"]
    assert entry.files in [r["files"] for r in results if r["built"]]
    # a machine that did not build downloaded the committed entry
    assert all(r["files"] == entry.files for r in results if not r["built"])
    listing = store.fs.ls(f"{store.root}/ckpt/raced", detail=False)
    assert sum(p.endswith(MANIFEST) for p in listing) == 1


def test_a_manifest_naming_a_path_outside_the_entry_is_not_used(
    tmp_path: Path, remote_url: str
) -> None:
    Cache(tmp_path / "a", remote=RemoteStore(remote_url)).get_or_build("pred", "k", _build)
    store = RemoteStore(remote_url)
    manifest = store.manifest("pred", "k")
    assert manifest is not None
    manifest["meta"]["files"] = {"../../escaped.bin": manifest["meta"]["files"]["model.bin"]}
    store.fs.pipe_file(f"{store.root}/pred/k/{MANIFEST}", json.dumps(manifest).encode())
    events: list[str] = []
    cache = Cache(tmp_path / "b", remote=RemoteStore(remote_url), on_event=events.append)
    assert cache.get("pred", "k") is None and cache.downloads == 0
    assert not list(tmp_path.rglob("escaped.bin"))
    assert any("not used" in e and "bad file entry" in e for e in events)

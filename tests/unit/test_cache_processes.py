"""robustness_harness.store.cache across processes: killed builds, killed writes, racing
builders."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustness_harness.store.cache import Cache, cache_key
from tests.unit.processes import python, race

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX signals")

KIND = "ckpt"
KEY = cache_key("killed")

BUILD_THEN_DIE = """
import os, signal, sys, time
from pathlib import Path
from robustness_harness.store.cache import Cache

root, key, how = sys.argv[1:4]

def build(tmp: Path) -> dict:
    with open(tmp / "model.bin", "wb") as fh:
        fh.write(b"x" * 100_000)  # half of the file
        fh.flush()
        if how == "exit":
            os._exit(1)
        print("ready", flush=True)
        time.sleep(60)  # SIGKILLed here
    return {}

Cache(root).get_or_build("ckpt", key, build)
"""

RACE = """
import json, os, sys, time
from pathlib import Path
from robustness_harness.store.cache import Cache

root, counter, go = sys.argv[1:4]

def build(tmp: Path) -> dict:
    time.sleep(0.5)
    with open(counter, "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    (tmp / "model.bin").write_bytes(b"payload")
    return {"builder": os.getpid()}

cache = Cache(root)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
entry, built = cache.get_or_build("ckpt", "shared", build)
print(json.dumps({"built": built, "meta": entry.meta, "path": str(entry.path)}), flush=True)
"""

WRITE_THEN_DIE = """
import os, signal, sys
from pathlib import Path
from robustness_harness.store import cache

def die(*_):
    os.kill(os.getpid(), signal.SIGKILL)

os.replace = die  # killed after the temp file is written, before the rename
cache.atomic_write_bytes(Path(sys.argv[1]), b"new" * 2_000_000)
"""


def scratch(cache: Cache) -> list[str]:
    return sorted(p.name for p in (cache.root / KIND).iterdir() if p.name.startswith(".tmp-"))


def build_ok(tmp: Path) -> dict:
    (tmp / "model.bin").write_bytes(b"y" * 200_000)
    return {"ok": True}


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_killed_build_leaves_no_entry_and_is_cleaned(tmp_path: Path, how: str) -> None:
    root = tmp_path / "cache"
    proc = python(BUILD_THEN_DIE, root, KEY, how)
    if how == "sigkill":
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # reaped: its pid is no longer alive
    assert proc.returncode == (1 if how == "exit" else -signal.SIGKILL)

    events: list[str] = []
    cache = Cache(root, on_event=events.append)
    assert cache.get(KIND, KEY) is None
    assert not cache.entry_dir(KIND, KEY).exists()
    assert [n.startswith(f".tmp-{KEY}-{proc.pid}-") for n in scratch(cache)] == [True]
    assert [str(p) for p, _ in cache.verify()] == [str(cache.root / KIND / scratch(cache)[0])]

    entry, built = cache.get_or_build(KIND, KEY, build_ok)
    assert built is True
    assert entry.file("model.bin").stat().st_size == 200_000
    assert scratch(cache) == []
    assert cache.verify() == []
    assert events == []


def test_racing_processes_build_once(tmp_path: Path) -> None:
    root, counter, go = tmp_path / "cache", tmp_path / "counter", tmp_path / "go"
    procs = [python(RACE, root, counter, go) for _ in range(4)]
    results = [json.loads(out) for out in race(procs, go, timeout=60)]

    assert len(counter.read_text().splitlines()) == 1
    assert sum(r["built"] for r in results) == 1
    assert len({json.dumps(r["meta"], sort_keys=True) for r in results}) == 1
    assert len({r["path"] for r in results}) == 1
    assert scratch(Cache(root)) == []


def test_killed_atomic_write_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old content")
    proc = python(WRITE_THEN_DIE, target)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"old content"
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".data.bin.tmp-")
    assert leftovers[0].stat().st_size == 6_000_000  # the complete temp file, never renamed


def test_reader_in_other_process_sees_complete_entries_only(tmp_path: Path) -> None:
    """Reads racing rebuilds never mistake the swap for corruption (which would delete)."""
    cache = Cache(tmp_path / "cache", on_event=lambda _: None)
    cache.get_or_build(KIND, KEY, build_ok)
    reader = python(
        """
        import sys
        from robustness_harness.store.cache import Cache
        cache = Cache(sys.argv[1], on_event=lambda m: print("EVENT", m))
        found = sum(cache.get(sys.argv[2], sys.argv[3]) is not None for _ in range(300))
        print("done", found)
        """,
        cache.root,
        KIND,
        KEY,
    )
    rebuilds = 0
    while reader.poll() is None and rebuilds < 2000:
        cache.get_or_build(KIND, KEY, build_ok, rebuild=True)
        rebuilds += 1
        time.sleep(0.001)
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert "EVENT" not in out
    assert out.startswith("done")
    assert int(out.split()[1]) > 100  # found the entry in most of its 300 reads
    assert rebuilds > 10
    assert os.path.isdir(cache.entry_dir(KIND, KEY))


# ------------------------------------------------------------- 20 kills mid-write

KILLS = 20
WRITE_S = {"ckpt": 0.012, "pred": 0.06}  # about how long one entry takes to write here
WRITER = """
import os, sys
import numpy as np
import torch
from torch import nn
from robustness_harness.store.cache import Cache, cache_key
from robustness_harness.store.checkpoint import save_checkpoint
from robustness_harness.inference.predictions import DetectionPredictions, Detections

torch.set_num_threads(1)
cache = Cache(sys.argv[1], on_event=lambda _m: None)


def model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64), nn.Conv2d(64, 512, 3))


def ckpt(tmp):  # the last step of HarnessSession._build_variant
    print("w", flush=True)  # a write begins
    save_checkpoint(model(), tmp, meta={"variant": "killed"})
    return {"variant": "killed"}


def pred(tmp):  # HarnessSession.predictions' build
    print("w", flush=True)
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 100, (100, 4)).astype(np.float32)
    det = Detections(boxes, rng.uniform(0, 1, 100).astype(np.float32), np.ones(100, np.int64))
    DetectionPredictions({i: det for i in range(1, 2001)}).save(tmp / "predictions.safetensors")
    return {"images": 2000}


for line in sys.stdin:  # "<kind> <round>": fork a writer, report its pid, reap it
    kind, rnd = line.split()
    pid = os.fork()
    if pid == 0:
        i = 0
        while True:  # entry after entry until SIGKILLed
            cache.get_or_build(kind, cache_key(kind, rnd, i), ckpt if kind == "ckpt" else pred)
            i += 1
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(status, flush=True)
"""


def scratch_key(path: Path) -> str:
    """The key of a build's scratch directory ``.tmp-<key>-<pid>-<hex>``."""
    match = re.fullmatch(r"\.(?:tmp|trash)-(.+)-\d+-[0-9a-f]{8}", path.name)
    assert match is not None, path
    return match[1]


@pytest.mark.slow
def test_sigkill_mid_checkpoint_and_prediction_writes(
    tmp_path: Path, record_property: object
) -> None:
    """20 SIGKILLs at random points of processes writing checkpoints and predictions
    through robustness_harness.store.cache: no corrupt entry,
    and the next run rebuilds what was killed."""
    import random

    from torch import nn

    from robustness_harness.inference.predictions import load_predictions
    from robustness_harness.store.checkpoint import load_checkpoint

    root = tmp_path / "cache"
    rng = random.Random(0)
    helper = python(WRITER, root, stdin=subprocess.PIPE)
    assert helper.stdin is not None and helper.stdout is not None
    mid_write = {"ckpt": 0, "pred": 0}
    try:
        for rnd in range(KILLS):
            kind = "ckpt" if rnd % 2 == 0 else "pred"
            helper.stdin.write(f"{kind} {rnd}\n")
            helper.stdin.flush()
            pid = int(helper.stdout.readline())
            while helper.stdout.readline().strip() != "w":  # its first entry: completed
                pass
            while helper.stdout.readline().strip() != "w":  # its second: being written
                pass
            time.sleep(rng.uniform(0.0, WRITE_S[kind]))  # a random point of that write
            os.kill(pid, signal.SIGKILL)
            while (line := helper.stdout.readline().strip()) == "w":
                pass
            assert int(line) == signal.SIGKILL  # killed, not crashed
            left = list((root / kind).glob(f".tmp-*-{pid}-*"))  # its unfinished build
            mid_write[kind] += bool(left)
    finally:
        helper.stdin.close()
        helper.wait(timeout=30)

    events: list[str] = []
    cache = Cache(root, on_event=events.append)
    problems = cache.verify()
    # only scratch directories of killed builds; never an entry with a bad file
    assert all(isinstance(where, Path) for where, _ in problems), problems
    assert {reason for _, reason in problems} <= {
        "leftover temporary directory of an interrupted build"
    }
    killed_keys = {scratch_key(where) for where, _ in problems}
    entries = cache.ls()
    assert killed_keys.isdisjoint({e.key for e in entries})

    def tiny() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64), nn.Conv2d(64, 512, 3))

    for entry in entries:  # every complete entry loads
        if entry.kind == "ckpt":
            load_checkpoint(tiny, entry.path)
        else:
            assert len(load_predictions(entry.file("predictions.safetensors")).by_image) == 2000

    rebuilt = 0
    for where, _ in problems:  # the next run rebuilds each killed entry
        kind = where.parent.name
        _, built = cache.get_or_build(kind, scratch_key(where), build_ok)
        rebuilt += built
    assert rebuilt == len(killed_keys)
    assert cache.verify() == [] and events == []
    counts = {
        "kills": KILLS,
        "killed_mid_checkpoint_write": mid_write["ckpt"],
        "killed_mid_prediction_write": mid_write["pred"],
        "complete_entries": len(entries),
        "corrupt_entries": 0,
        "rebuilt": rebuilt,
    }
    record_property("crash_counts", counts)  # type: ignore[operator]
    print(counts)
    assert mid_write["ckpt"] >= 1 and mid_write["pred"] >= 1, counts

"""The `harness` console script: subcommands and exit codes 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cache import Cache
from harness.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_validate_good_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(REPO / "suites")]) == 0
    assert "ok      " in capsys.readouterr().out


def test_validate_bad_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (REPO / "suites" / "toydrive_detector.yaml").read_text().replace("map,", "mAp,", 1)
    )
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("INVALID ") and "bad.yaml" in out and "did you mean 'map'" in out


def test_validate_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "/no/such/suite.yaml"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_bad_usage_exits_2() -> None:
    with pytest.raises(SystemExit) as err:
        main(["frobnicate"])
    assert err.value.code == 2


def test_cache_ls_verify_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = Cache(tmp_path / "c")
    entry, _ = cache.get_or_build(
        "ckpt", "k1", lambda d: (d / "w.bin").write_bytes(b"x" * 10) and {"variant": "v"}
    )
    root = ["--cache", str(cache.root)]
    assert main(["cache", "ls", *root]) == 0
    assert "ckpt" in capsys.readouterr().out
    assert main(["cache", "verify", *root]) == 0
    (entry.path / "w.bin").write_bytes(b"y" * 10)
    assert main(["cache", "verify", *root]) == 1
    assert "CORRUPT" in capsys.readouterr().out
    assert main(["cache", "clear", *root]) == 0
    assert "removed 1 entry" in capsys.readouterr().out
    assert cache.ls() == []


def test_gen_data(tmp_path: Path) -> None:
    assert (
        main(
            [
                "gen-data",
                "toydrive",
                "--out",
                str(tmp_path / "td"),
                "--n-train",
                "3",
                "--n-val",
                "2",
            ]
        )
        == 0
    )
    val = json.loads((tmp_path / "td" / "val.json").read_text())
    assert len(val["images"]) == 2 and val["annotations"]

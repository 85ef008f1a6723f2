"""The `harness` console script: subcommands and exit codes 0/1/2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from robustness_harness.cli import main
from robustness_harness.store.cache import Cache

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


def test_show_plan_without_building(
    tmp_path: Path, shared_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    suite = REPO / "suites" / "toydrive_detector.yaml"
    argv = ["show", str(suite), "--cache", str(cache), "--data-root", str(shared_data_root)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "model     toydrive-fcos (detection)" in out
    assert "prune l1_filter sparsity=0.5 → finetune epochs=5 lr=0.002" in out
    assert "checkpoint: base weights [" in out  # dense: the shipped weights
    assert out.count("checkpoint: not built [") == 2  # nothing is built into the empty cache
    # the matrix respects apply: latency gates only structured-50
    assert re.search(r"\n  latency +\. +\. +x\n", out), out
    assert "22 gates" in out
    assert Cache(cache).ls() == []


def test_show_does_not_generate_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_root = tmp_path / "data"
    suite = REPO / "suites" / "toydrive_detector.yaml"
    argv = ["show", str(suite), "--cache", str(tmp_path / "c"), "--data-root", str(data_root)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "checkpoint: unknown (toydrive data is not generated yet" in out
    assert not data_root.exists() or not any(data_root.iterdir())


def test_show_invalid_suite_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "suites" / "toydrive_detector.yaml").read_text() + "\nbogus: 1\n")
    assert main(["show", str(bad), "--cache", str(tmp_path / "c")]) == 1
    assert capsys.readouterr().out.startswith("INVALID ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "/no/such/suite.yaml"], "no such suite file"),
        (
            ["cache", "clear", "--kind", "../x", "--cache", "CACHE"],
            "cache kind '../x' is not a name",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [str(tmp_path / "c") if a == "CACHE" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "x.yaml", "--limit", "0"], "expected a positive number of images, got '0'"),
        (["show", "x.yaml", "--seed", "-1"], "expected a seed >= 0, got '-1'"),
        (["cache", "purge"], "invalid choice: 'purge'"),
        (["show"], "the following arguments are required: suite"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_cache_ls_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "ls", "--cache", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out.startswith("0 entries, 0.00 MB in ")


def test_show_recipe_names_given_weights(tmp_path: Path) -> None:
    from robustness_harness.run.plan import recipe
    from robustness_harness.suite import VariantSpec

    (tmp_path / "c.safetensors").write_bytes(b"")
    spec = VariantSpec.model_validate(
        {"checkpoint": "c.safetensors", "finetune": {"epochs": 1}},
        context={"base_dir": str(tmp_path)},
    )
    assert recipe(spec) == f"from {tmp_path / 'c.safetensors'} → finetune epochs=1"

"""``pytest suites/ --harness-cache s3://...`` on two machines (two empty local caches):
the second runs warm from the remote cache, with zero builds and the same values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugin.suite_texts import magnitude, tiny_classifier_suite, write_tiny_classifier
from tests.unit.s3_server import s3_server

CHECKS = "  accuracy: {metric: accuracy, drop_max: 1}\n  ece: {metric: ece, max: 1}\n"
BUILD_LINES = ("built checkpoint", "predicted ")


def _values(path: Path) -> dict[str, float]:
    doc = json.loads((path / "results.json").read_text())
    return {item["nodeid"]: item["value"] for item in doc["items"]}


@pytest.mark.slow
def test_an_empty_machine_runs_warm_from_the_remote_cache(
    suite_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tiny_classifier(suite_dir)
    suite = tiny_classifier_suite(CHECKS).replace("  dense: {}\n", "  dense: {}\n" + magnitude(50))
    (suite_dir.path / "suites" / "tiny.yaml").write_text(suite)
    with s3_server() as bucket:
        url = f"{bucket}/ci"
        outputs = []
        for machine in ("one", "two"):
            monkeypatch.setenv("HARNESS_LOCAL_CACHE", str(suite_dir.path / f"local-{machine}"))
            result = suite_dir.runpytest_subprocess(
                "suites",
                "-p",
                "no:cacheprovider",
                "--harness-cache",
                url,
                "--harness-report",
                machine,
            )
            assert result.ret == 0, result.stdout.str()
            outputs.append(result.stdout.str() + result.stderr.str())
    assert all(line in outputs[0] for line in BUILD_LINES)  # the first machine builds
    assert not any(line in outputs[1] for line in BUILD_LINES), outputs[1]
    # downloaded into its own cache: the predictions (these checks need no model)
    assert (suite_dir.path / "local-two" / "pred").is_dir()
    assert not (suite_dir.path / "local-two" / "ckpt").exists()
    assert _values(suite_dir.path / "one") == _values(suite_dir.path / "two")

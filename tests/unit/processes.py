"""Child Python processes for the tests of what happens across processes (kills, races)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def python(script: str, *args: object, **kwargs: object) -> subprocess.Popen[str]:
    """``python -c script args...`` with text pipes for stdout and stderr."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def race(procs: list[subprocess.Popen[str]], go: Path, timeout: float = 120) -> list[str]:
    """Wait until every process printed ``ready``, create ``go`` to start them at once,
    and return their stdout after each exited 0 (killing stragglers on failure)."""
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr
        go.touch()
        outputs = [proc.communicate(timeout=timeout) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    return [out for out, _ in outputs]

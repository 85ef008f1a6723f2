"""Wall time and peak memory of `pytest suites/`: cold vs warm cache, -n 2 vs -n 0.

Run: ``python benchmarks/full_run.py [--suites suites/] [--cache DIR] [--runs ...]``.

Each run is ``python -m pytest <suites> -q -p no:cacheprovider --harness-cache <dir>``
in a subprocess. ``cold`` starts from an empty cache directory (removed first), ``warm``
reuses what the cold run of the same worker count built; ``-n2`` runs use their own
cache directory (``<cache>-n2``), so both cold runs build everything. Reported: wall
time, the peak RSS of the largest process (``getrusage(RUSAGE_CHILDREN)`` of a shim
that waits for pytest) and, with psutil, the peak summed RSS of the whole process tree
(pytest plus xdist workers, sampled every 0.2 s). Ratios printed: warm / cold (target
<= 5 %) and cold -n 0 / cold -n 2 (target >= 1.7x on 2 cores). A cold run of the
repository's suites takes many minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RUNS = ("cold", "warm", "cold-n2", "warm-n2")
SHIM = """
import json, resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": code, "max_rss_mib": peak_kib / 1024}), file=sys.stderr)
"""


@dataclass
class RunResult:
    name: str
    seconds: float
    exit_code: int
    max_rss_mib: float
    tree_rss_mib: float | None


def tree_rss_sampler(pid: int, stop: threading.Event, out: list[float]) -> None:
    """Peak of the summed RSS of ``pid`` and its descendants (psutil), into ``out[0]``."""
    try:
        import psutil
    except ImportError:
        return
    out.append(0.0)
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.wait(0.2):
        total = 0
        with contextlib.suppress(psutil.Error):
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
        out[0] = max(out[0], total / 2**20)


def run_pytest(name: str, suites: list[str], cache: Path, args: argparse.Namespace) -> RunResult:
    cmd = [sys.executable, "-m", "pytest", *suites, "-q", "-p", "no:cacheprovider"]
    cmd += ["--harness-cache", str(cache), *args.pytest_args]
    if name.endswith("n2"):
        cmd += ["-n", "2"]
    if args.data_root:
        cmd += ["--harness-data-root", args.data_root]
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", SHIM, *cmd],
        stdout=None if args.verbose else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop, tree = threading.Event(), []
    sampler = threading.Thread(target=tree_rss_sampler, args=(proc.pid, stop, tree))
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    info = json.loads(err.strip().splitlines()[-1])
    return RunResult(name, seconds, info["code"], info["max_rss_mib"], tree[0] if tree else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suites", nargs="+", default=["suites/"], help="suite files or dirs")
    parser.add_argument(
        "--cache", type=Path, help="cache directory for the -n 0 runs (default: a temp dir)"
    )
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    parser.add_argument("--data-root", help="reuse generated datasets from this directory")
    parser.add_argument("--verbose", action="store_true", help="show pytest's output")
    parser.add_argument(
        "pytest_args", nargs="*", help="extra pytest arguments, after --, e.g. -- -k dense"
    )
    args = parser.parse_args()
    temp = None if args.cache else tempfile.mkdtemp(prefix="harness-full-run-")
    cache = args.cache or Path(temp) / "cache"  # type: ignore[arg-type]
    caches = {"": cache, "n2": cache.with_name(cache.name + "-n2")}
    results: dict[str, RunResult] = {}
    try:
        for name in args.runs:
            where = caches["n2" if name.endswith("n2") else ""]
            if name.startswith("cold"):
                shutil.rmtree(where, ignore_errors=True)
            results[name] = res = run_pytest(name, args.suites, where, args)
            tree = f"{res.tree_rss_mib:8.0f} MiB" if res.tree_rss_mib is not None else "  (psutil?)"
            print(
                f"{name:8s} {res.seconds:8.1f} s  exit {res.exit_code}  "
                f"largest process {res.max_rss_mib:6.0f} MiB  whole tree {tree}",
                flush=True,
            )
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    print_ratios(results)


def print_ratios(results: dict[str, RunResult]) -> None:
    for warm, cold in (("warm", "cold"), ("warm-n2", "cold-n2")):
        if warm in results and cold in results:
            ratio = results[warm].seconds / results[cold].seconds
            verdict = "met" if ratio <= 0.05 else "NOT met"
            print(f"{warm} / {cold}: {ratio:.1%} (target <= 5 %: {verdict})")
    if "cold" in results and "cold-n2" in results:
        speedup = results["cold"].seconds / results["cold-n2"].seconds
        verdict = "met" if speedup >= 1.7 else "NOT met"
        print(f"cold -n 0 / cold -n 2: {speedup:.2f}x (target >= 1.7x: {verdict})")
    if "warm" in results and "warm-n2" in results:
        print(f"warm -n 0 / warm -n 2: {results['warm'].seconds / results['warm-n2'].seconds:.2f}x")
    if results:
        peak = max(results.values(), key=lambda r: r.max_rss_mib)
        print(f"peak RSS of one process: {peak.max_rss_mib:.0f} MiB ({peak.name})")
        trees = [r for r in results.values() if r.tree_rss_mib is not None]
        if trees:
            top = max(trees, key=lambda r: r.tree_rss_mib or 0.0)
            print(f"peak RSS of the process tree: {top.tree_rss_mib:.0f} MiB ({top.name})")


if __name__ == "__main__":
    main()

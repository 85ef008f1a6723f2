"""Time the default corruption set on toydrive val images: serial loop vs harness cold/warm.

Run: ``python benchmarks/corruptions.py [--images 400] [--severities 1 3 5] [--workers 2]``.

The 15 benchmark corruptions at the given severities are generated three ways:

(a) a serial loop calling ``imagecorruptions.corrupt`` directly (after warming the library
    up in this process, so its import and glass_blur's numba compilation are not timed);
(b) the harness cold: ``corrupted_sets`` on an empty temporary cache with ``--workers``
    processes (worker start-up, image loading, hashing and writing the cache included);
(c) the harness warm: the same call again, answered from that cache.

Image loading (PNG decode) is timed in (a) and (b). All three must give identical arrays.
The ratios serial/cold and serial/warm come from this one run; other processes on the
machine affect them (the script prints the load average).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import imagecorruptions
import numpy as np

from robustness_harness.perturb.corruptions import (
    BENCHMARK,
    CorruptionData,
    corrupted_sets,
    corruption_seed,
)

# Pool workers (forkserver) re-run this file as ``__mp_main__`` on Python 3.11: the
# imports above are already loaded in the forkserver; torch (imported by robustness_harness.data)
# would cost every worker seconds, so robustness_harness.data is imported inside main().

Sets = dict[tuple[str, int], dict[int, np.ndarray]]

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="toydrive val images (max 400)")
    parser.add_argument("--severities", type=int, nargs="+", default=[3])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def serial_loop(
    data: CorruptionData, ids: list[int], jobs: list[tuple[str, int]], seed: int
) -> Sets:
    """(a): load each image, then ``np.random.seed`` + ``imagecorruptions.corrupt`` per job."""
    out: Sets = {job: {} for job in jobs}
    for i in ids:
        image = data.load_image(i)
        for name, sev in jobs:
            s = corruption_seed(seed, i, name, sev)
            np.random.seed(s)
            kwargs = {"seed": s} if name in ("impulse_noise", "glass_blur") else {}
            out[(name, sev)][i] = imagecorruptions.corrupt(image, sev, name, **kwargs)
    return out


def warm_up(image: np.ndarray) -> None:
    """Run every corruption once (glass_blur compiles) in this process before timing (a)."""
    for name in BENCHMARK:
        kwargs = {"seed": 0} if name in ("impulse_noise", "glass_blur") else {}
        imagecorruptions.corrupt(image[:32, :32], 1, name, **kwargs)


def same(a: Sets, b: Sets) -> bool:
    return a.keys() == b.keys() and all(
        a[job].keys() == b[job].keys() and all(np.array_equal(a[job][i], b[job][i]) for i in a[job])
        for job in a
    )


def main() -> None:
    args = parse_args()
    from robustness_harness.data.builtin import toydrive_dataset
    from robustness_harness.store.cache import Cache

    root = Path(os.environ.get("HARNESS_CACHE", REPO / ".harness-cache")) / "data"
    data = toydrive_dataset(root)["val"].limit(args.images)
    ids = list(data.image_ids)
    jobs = [(name, sev) for sev in args.severities for name in BENCHMARK]
    first = data.load_image(ids[0])
    print(
        f"toydrive val: {len(ids)} images {first.shape[1]}x{first.shape[0]}, "
        f"{len(BENCHMARK)} corruptions x severities {args.severities} = "
        f"{len(ids) * len(jobs)} corrupted images; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    warm_up(first)

    start = time.perf_counter()
    serial = serial_loop(data, ids, jobs, args.seed)
    t_serial = time.perf_counter() - start
    print(f"(a) serial imagecorruptions.corrupt loop: {t_serial:7.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(tmp)
        start = time.perf_counter()
        cold = corrupted_sets(cache, data, jobs, seed=args.seed, workers=args.workers)
        t_cold = time.perf_counter() - start
        print(f"(b) harness cold, workers={args.workers}:         {t_cold:7.2f} s")
        start = time.perf_counter()
        warm = corrupted_sets(cache, data, jobs, seed=args.seed)
        t_warm = time.perf_counter() - start
        print(
            f"(c) harness warm:                         {t_warm:7.2f} s "
            f"({t_warm / len(jobs) * 1000:.0f} ms per {len(ids)}-image set)"
        )

    if not (same(serial, cold) and same(serial, warm)):
        raise SystemExit("the three ways disagree: the harness does not match the library")
    print(f"serial/cold = {t_serial / t_cold:.2f}x, serial/warm = {t_serial / t_warm:.1f}x")


if __name__ == "__main__":
    main()

"""Time the default corruption set on toydrive val images: serial loop vs harness cold/warm.

Run: ``python benchmarks/corruptions.py [--images 400] [--severities 1 3 5] [--workers 2]
[--size 640x480]`` (``--size``: toydrive images resized to that size first, as real photos).

The 15 benchmark corruptions at the given severities are generated three ways:

(a) a serial loop calling ``imagecorruptions.corrupt`` directly (after warming the library
    up in this process, so its import and glass_blur's numba compilation are not timed);
(b) the harness cold: ``corrupted_sets`` on an empty temporary cache with ``--workers``
    processes (worker start-up, image loading, hashing and writing the cache included);
(c) the harness warm: the same call again, answered from that cache, every image read and
    decoded (sets are stored as PNG, lossless, and read one image at a time).

It also prints the bytes per cached image against the raw uint8 array.

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
    parser.add_argument("--size", default=None, help="WxH: resize the images first, e.g. 640x480")
    return parser.parse_args()


class Resized:
    """``data`` with every image resized to ``size`` (bilinear): a real photo's size."""

    def __init__(self, data: CorruptionData, size: tuple[int, int]) -> None:
        self.data, self.size = data, size
        self.image_ids = list(data.image_ids)
        self.fingerprint = f"{data.fingerprint}:{size[0]}x{size[1]}"

    def load_image(self, image_id: int) -> np.ndarray:
        from PIL import Image

        image = Image.fromarray(self.data.load_image(image_id)).resize(self.size, Image.BILINEAR)
        return np.asarray(image).copy()


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
    data: CorruptionData = toydrive_dataset(root)["val"].limit(args.images)
    if args.size:
        w, h = (int(v) for v in args.size.lower().split("x"))
        data = Resized(data, (w, h))
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
        warm = {job: {i: images[i] for i in images} for job, images in warm.items()}
        t_warm = time.perf_counter() - start
        print(
            f"(c) harness warm, every image decoded:    {t_warm:7.2f} s "
            f"({t_warm / len(jobs) * 1000:.0f} ms per {len(ids)}-image set)"
        )
        stored = sum(f.stat().st_size for f in Path(tmp).rglob("images.safetensors"))
        raw = sum(img.nbytes for images in serial.values() for img in images.values())
        n = len(ids) * len(jobs)
        print(
            f"cached: {stored / n / 1e6:.3f} MB per image vs {raw / n / 1e6:.3f} MB raw "
            f"({stored / raw:.2f}x)"
        )
        if not (same(serial, cold) and same(serial, warm)):
            raise SystemExit("the three ways disagree: the harness does not match the library")
    print(f"serial/cold = {t_serial / t_cold:.2f}x, serial/warm = {t_serial / t_warm:.1f}x")


if __name__ == "__main__":
    main()

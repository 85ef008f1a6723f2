"""Harness prediction path vs a bare ``model(x)`` loop on the same images.

Run: ``python benchmarks/overhead.py [--images 400] [--batch 32] [--rounds 5]``.

The shipped toydrive-fcos on the toydrive validation split, 2 threads, CPU. "harness" is
``predict_detections`` (reads each image, the next batch in a background thread,
converts it, batches, ``inference_mode``, maps labels to category ids, builds
``Detections``) as on every variant after the first, with the decoded images in the
dataset's memory (``CocoDetectionData.decoded_images``); "harness first pass" forgets them before
each call, so every PNG is decoded again, as for the first variant; "bare" is
``model(images)`` over the same images already decoded into tensors, in the same
batches, under ``inference_mode``.
The calls alternate round by round, so load from other processes hits them alike; the
ratio uses the fastest round of each (the least disturbed), the median is printed too.
Also measured: the bare loop with the model in channels-last memory format (adopted
only if it helps). Target: harness / bare <= 1.10.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from common import toydrive_val, trained_toydrive_fcos

from robustness_harness.inference.evaluate import predict_detections


def bare_loop(model: torch.nn.Module, images: list[torch.Tensor], batch: int) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            for first in range(0, len(images), batch):
                model(images[first : first + batch])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(2)

    data = toydrive_val().limit(args.images)
    model = trained_toydrive_fcos()
    images = [
        torch.from_numpy(data.load_image(i)).permute(2, 0, 1).float().div(255)
        for i in data.image_ids
    ]
    cl_model = trained_toydrive_fcos().to(memory_format=torch.channels_last)

    def first_pass() -> object:
        data.decoded_images().clear()  # every file decoded again, as for the first variant
        return predict_detections(model, data, batch_size=args.batch)

    calls: dict[str, Callable[[], object]] = {
        "harness": lambda: predict_detections(model, data, batch_size=args.batch),
        "harness first pass": first_pass,
        "bare": bare_loop(model, images, args.batch),
        "bare channels-last": bare_loop(cl_model, images, args.batch),
    }
    for fn in calls.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    print(f"{len(data)} toydrive val images, batch {args.batch}, 2 threads, {args.rounds} rounds")
    for name, t in times.items():
        print(
            f"{name:20s} fastest {best[name] * 1e3:8.1f} ms ({best[name] / len(data) * 1e3:.2f} "
            f"ms/image), median {statistics.median(t) * 1e3:8.1f} ms"
        )
    ratio = best["harness"] / best["bare"]
    verdict = "met" if ratio <= 1.10 else "NOT met"
    print(f"ratio harness / bare model(x): {ratio:.3f}x (target <= 1.10: {verdict})")
    print(f"ratio harness first pass / bare: {best['harness first pass'] / best['bare']:.3f}x")
    print(f"ratio channels-last / bare: {best['bare channels-last'] / best['bare']:.3f}x")


if __name__ == "__main__":
    main()

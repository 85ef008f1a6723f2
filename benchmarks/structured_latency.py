"""Parameter and CPU latency ratio of the tiny toy-drive FCOS after l1_filter pruning.

Run: ``python benchmarks/structured_latency.py [--sparsity 0.5] [--runs 30]``.
Trained weights, batch 8 of 128x128 toydrive validation images, 2 threads, warm-up,
median of ``--runs`` timed forwards of the whole detector (transform + network +
post-processing) and of the network alone (backbone + head). Dense and pruned runs
alternate, so load from other processes affects both alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from harness.compress import CompressContext, count_parameters
from harness.compress.prune import L1FilterParams, l1_filter
from harness.data.registry import toydrive_dataset
from models.toydrive import IMAGE_SIZE, WEIGHTS_FILE, build_toydrive_fcos, verified_shipped_weights

BATCH = 8
THREADS = 2


def _timed_ns(fn: Callable[[], object]) -> int:
    start = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - start


def median_ms(
    calls: dict[str, Callable[[], object]], runs: int, warmup: int = 5
) -> dict[str, float]:
    """Median wall time in ms of each zero-argument call, the calls interleaved run by run."""
    times: dict[str, list[int]] = {name: [] for name in calls}
    with torch.inference_mode():
        for i in range(warmup + runs):
            for name, fn in calls.items():
                elapsed = _timed_ns(fn)
                if i >= warmup:
                    times[name].append(elapsed)
    return {name: statistics.median(t) / 1e6 for name, t in times.items()}


def _network(model: nn.Module, batch: torch.Tensor) -> Callable[[], object]:
    normalized = (batch - 0.45) / 0.25
    return lambda: model.head(list(model.backbone(normalized).values()))


def _trained_dense() -> nn.Module:
    """The shipped toydrive-fcos weights (sha256-verified), so post-processing sees
    realistic detections; random init if they are absent."""
    model = build_toydrive_fcos()
    if WEIGHTS_FILE.exists():
        model.load_state_dict(load_file(verified_shipped_weights()))
    return model.eval()


def _val_images(n: int) -> torch.Tensor:
    """The first ``n`` toydrive validation images as a float batch in [0, 1]."""
    with tempfile.TemporaryDirectory() as tmp:
        val = toydrive_dataset(Path(tmp), n_train=1, n_val=n)["val"]
        return torch.stack(
            [
                torch.from_numpy(val.load_image(i)).permute(2, 0, 1).float() / 255
                for i in val.image_ids
            ]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    dense = _trained_dense()
    pruned = build_toydrive_fcos()
    pruned.load_state_dict(dense.state_dict())
    batch = _val_images(BATCH)
    ctx = CompressContext(example_inputs=batch[:2])
    l1_filter(pruned, L1FilterParams(sparsity=args.sparsity), ctx)
    pruned.eval()
    images = list(batch)
    ms = median_ms(
        {
            "dense": lambda: dense(images),
            "pruned": lambda: pruned(images),
            "dense_net": _network(dense, batch),
            "pruned_net": _network(pruned, batch),
        },
        args.runs,
    )
    n_dense, n_pruned = count_parameters(dense)[0], count_parameters(pruned)[0]
    print(f"batch {BATCH} x {IMAGE_SIZE}x{IMAGE_SIZE}, {THREADS} threads, median of {args.runs}")
    print(f"{'':10} {'detector':>11} {'network':>11} {'params':>9}")
    print(f"{'dense':10} {ms['dense']:8.2f} ms {ms['dense_net']:8.2f} ms {n_dense:>9,}")
    print(f"{'l1_filter':10} {ms['pruned']:8.2f} ms {ms['pruned_net']:8.2f} ms {n_pruned:>9,}")
    print(f"param ratio   {n_pruned / n_dense:.3f}x")
    print(
        f"latency ratio {ms['pruned'] / ms['dense']:.3f}x detector (with post-processing), "
        f"{ms['pruned_net'] / ms['dense_net']:.3f}x network (backbone + head)"
    )


if __name__ == "__main__":
    main()

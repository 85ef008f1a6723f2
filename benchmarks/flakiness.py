"""How much the default gates move when the baseline is retrained with another seed.

Run: ``python benchmarks/flakiness.py toysigns|toydrive [--seeds 21] [--jobs 2] [--epochs E]``.

1. **Train** the embedded model's recipe with seeds 0..N-1 (``--epochs`` shortens the
   schedule: a cheaper proxy for the detector, whose full recipe trains for ~13 min on
   2 cores). Weights land in ``<out>/<model>/seed<k>.safetensors`` (atomic writes,
   reused by later runs).
2. **Gate** pair k = (baseline seed k, candidate seed k+1): one suite per pair whose
   candidates are ``retrain`` (the same recipe, another seed: should pass) and
   ``structured-70`` (l1-filter pruning of 70 % of the baseline's filters, no
   fine-tuning: should fail), with the default suite's checks for its tight tier (the
   checks gating ``--tier`` there; size and latency left out, they do not depend on the
   seed). The suites run through ``pytest -n <jobs> --harness-report``, so the decisions
   are the harness's own; cached predictions make re-gating after a threshold change cheap.
3. **Report** per check: the retrain's value (mean, std, max over pairs), the baseline's
   own value spread over seeds, how many pairs the retrain passes and structured-70 fails,
   and the threshold that would pass 19 of 20 retrains (the 95th percentile).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from robustness_harness.suite.thresholds import Limit, Thresholds

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "toysigns": ("suites/toysigns_classifier.yaml", "unstructured-70"),
    "toydrive": ("suites/toydrive_detector.yaml", "unstructured-80"),
}
SEED_INDEPENDENT = {"size", "latency_ms"}


def weights_path(out: Path, model: str, seed: int) -> Path:
    return out / model / f"seed{seed}.safetensors"


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def train_seed(model: str, seed: int, epochs: int | None, out: Path) -> tuple[int, float]:
    """Train ``model``'s recipe with ``seed`` (and ``epochs``) into ``out``; return seconds."""
    from robustness_harness.run.session import HarnessOptions, HarnessSession

    session = HarnessSession(HarnessOptions())
    suite = session.suite(ROOT / MODELS[model][0])
    data = session.dataset(suite, "train")
    if model == "toysigns":
        from robustness_harness_models.toysigns import RECIPE
        from robustness_harness_models.toysigns import train_toysigns_cnn as train
    else:
        from robustness_harness_models.toydrive import RECIPE
        from robustness_harness_models.toydrive import train_toydrive_fcos as train
    recipe = dataclasses.replace(RECIPE, seed=seed, epochs=epochs or RECIPE.epochs)
    target = weights_path(out, model, seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        train(data, Path(tmp), recipe=recipe, progress=lambda line: None)
        os.replace(Path(tmp) / "model.safetensors", target)
    return seed, time.perf_counter() - start


def train_all(model: str, seeds: int, epochs: int | None, jobs: int, out: Path) -> None:
    (out / model).mkdir(parents=True, exist_ok=True)
    todo = [s for s in range(seeds) if not weights_path(out, model, s).exists()]
    print(f"{model}: {seeds - len(todo)} of {seeds} seeds trained, training {len(todo)}")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = get_context("spawn")
    with ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads,)
    ) as pool:
        futures = [pool.submit(train_seed, model, s, epochs, out) for s in todo]
        for future in futures:
            seed, seconds = future.result()
            print(f"  seed {seed}: trained in {seconds:.0f} s", flush=True)


def tight_checks(model: str, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The default suite's checks that gate its tight-tier variant, minus size/latency
    and the metrics in ``skip``."""
    suite_file, tier = MODELS[model]
    spec = yaml.safe_load((ROOT / suite_file).read_text())
    apply = spec.get("apply", {})
    return {
        name: check
        for name, check in spec["checks"].items()
        if tier in apply.get(name, [tier]) and check["metric"] not in SEED_INDEPENDENT | skip
    }


def study_checks(model: str, confidence: float | None, skip: frozenset[str]) -> dict[str, Any]:
    """The tight checks, plus ``<name>+ci`` (paired bootstrap, ``decide: lenient``) for
    each resamplable one when ``confidence`` is given."""
    from robustness_harness.metrics import METRICS

    task = "classification" if model == "toysigns" else "detection"
    checks = tight_checks(model, skip)
    if confidence is not None:
        for name, check in list(checks.items()):
            if "confidence" not in check and METRICS.get(check["metric"]).resamplable(task):
                checks[f"{name}+ci"] = {**check, "confidence": confidence, "decide": "lenient"}
    return checks


def write_suites(model: str, seeds: int, out: Path, checks: dict[str, Any]) -> Path:
    """One suite per pair (seed k baseline, seed k+1 retrain, structured-70 of seed k)."""
    suite_file, _ = MODELS[model]
    default = yaml.safe_load((ROOT / suite_file).read_text())
    directory = out / model / "suites"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for k in range(seeds - 1):
        suite = {
            "suite": f"flaky-{model}-{k:02d}",
            "model": {**default["model"], "checkpoint": f"../seed{k}.safetensors"},
            "data": default["data"],
            "seed": 0,
            "baseline": "dense",
            "variants": {
                "dense": {},
                "retrain": {"checkpoint": f"../seed{k + 1}.safetensors"},
                "structured-70": {
                    "compress": [{"prune": {"method": "l1_filter", "sparsity": 0.7}}]
                },
            },
            "checks": checks,
        }
        (directory / f"pair{k:02d}.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    return directory


def gate_all(
    model: str, seeds: int, jobs: int, out: Path, checks: dict[str, Any]
) -> list[dict[str, Any]]:
    directory = write_suites(model, seeds, out, checks)
    report = out / model / "report"
    command = [
        sys.executable, "-m", "pytest", str(directory), "-q", "-p", "no:cacheprovider",
        "--harness-report", str(report), "-n", str(jobs),
    ]  # fmt: skip
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=False)
    items = json.loads((report / "results.json").read_text())["items"]
    errors = [i for i in items if i["status"] not in ("passed", "failed")]
    for item in errors:
        print(f"not measured: {item.get('nodeid', item['suite'])}: {item.get('message', '')}")
    return [i for i in items if i["status"] in ("passed", "failed")]


def gated(item: dict[str, Any]) -> tuple[Limit, float]:
    """The first threshold of a results.json item and the quantity it bounds (``value``,
    or ``drop``/``increase``/``ratio`` from ``derived``), as the harness maps them."""
    limit = Thresholds(**item["thresholds"]).limits()[0]
    value = item["value"] if limit.quantity == "value" else item["derived"][limit.quantity]
    return limit, value


def summarize(model: str, items: list[dict[str, Any]], checks: dict[str, Any]) -> None:
    """Print the flakiness table (markdown)."""
    print(f"\n{model}: {len({i['suite'] for i in items})} pairs")
    print("| check | threshold | retrain: gated quantity mean ± std (worst) | 95th pct "
          "| baseline value std over seeds | retrain passes | structured-70 fails |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name in checks:
        retrain = [i for i in items if i["check"] == name and i["variant"] == "retrain"]
        pruned = [i for i in items if i["check"] == name and i["variant"] == "structured-70"]
        if not retrain:
            continue
        limit, _ = gated(retrain[0])
        values = sorted(gated(i)[1] for i in retrain)
        worst = values[-1] if limit.upper else values[0]
        rank = round((0.95 if limit.upper else 0.05) * (len(values) - 1))
        bases = [i["baseline_value"] for i in retrain if i.get("baseline_value") is not None]
        spread = f"{statistics.stdev(bases):.4f}" if len(bases) > 1 else "-"
        print(
            f"| {name} | {retrain[0].get('threshold_text', '')} | {limit.quantity} "
            f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} ({worst:.4f}) "
            f"| {values[rank]:.4f} | {spread} "
            f"| {sum(bool(i['passed']) for i in retrain)}/{len(retrain)} "
            f"| {sum(not i['passed'] for i in pruned)}/{len(pruned)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--seeds", type=int, default=21, help="models trained (pairs = seeds - 1)")
    parser.add_argument("--epochs", type=int, default=None, help="shorter schedule (a proxy)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / ".harness-cache" / "flakiness")
    parser.add_argument("--confidence", type=float, default=None, help="add bootstrap twins")
    parser.add_argument(
        "--skip", default="", help="metrics left out, comma-separated (e.g. mpc,rpc,mce)"
    )
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args()
    out = args.out / (f"{args.epochs}ep" if args.epochs else "full")
    train_all(args.model, args.seeds, args.epochs, args.jobs, out)
    if not args.train_only:
        skip = frozenset(filter(None, args.skip.split(",")))
        checks = study_checks(args.model, args.confidence, skip)
        summarize(args.model, gate_all(args.model, args.seeds, args.jobs, out, checks), checks)


if __name__ == "__main__":
    main()

"""Shared builders for the unit tests: a decided gate outcome and a minimal suite text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from robustness_harness.metrics import METRICS
from robustness_harness.run.decide import Gate, GateMeasurements, Measurement, decide_gate
from robustness_harness.run.outcome import CheckOutcome, GateStatistics
from robustness_harness.suite import CheckSpec
from robustness_harness_models.toydrive import build_toydrive_fcos


def fcos_suite_file(directory: Path, text: str) -> Path:
    """``directory/suite.yaml`` holding ``text``, next to ``w.pt``: the weights of a seeded,
    untrained ``toydrive-fcos`` (``model: {name: toydrive-fcos, checkpoint: w.pt}``)."""
    torch.manual_seed(0)
    torch.save(build_toydrive_fcos().state_dict(), directory / "w.pt")
    path = directory / "suite.yaml"
    path.write_text(text)
    return path


def suite_head(variants: str) -> str:
    """Suite ``s`` of model ``toydrive-fcos`` on dataset ``toydrive`` up to ``checks:``:
    variant ``dense`` (the baseline), then ``variants`` (indented YAML lines); append
    indented check lines."""
    return (
        "suite: s\n"
        "model: {name: toydrive-fcos}\n"
        "data: {name: toydrive}\n"
        "baseline: dense\n"
        "variants:\n"
        "  dense: {}\n"
        f"{variants}"
        "checks:\n"
    )


# A suite with variants ``dense`` (the baseline) and ``small`` (pruned by the fake
# ``_test_prune`` of the ``spec_registries`` fixture) and no checks yet: append indented
# check lines after the final ``checks:``.
MINIMAL_SUITE = suite_head("  small: {compress: [{prune: {method: _test_prune, sparsity: 0.5}}]}\n")


#: The stamps of a gate record (``outcome_record(item_stamps=...)``).
ITEM_STAMPS = {
    "harness": "0.1.0",
    "torch": "2.13.0",
    "torchvision": "0.28.0",
    "device": "cpu",
    "data": "d" * 64,
    "checkpoint": "k1",
    "baseline_checkpoint": "k0",
    "date": "2026-01-01T00:00:00+00:00",
    "git_commit": "abc",
}


def decided_outcome(
    check: CheckSpec,
    candidate: Any,
    baseline: Any,
    *,
    variant: str = "v",
    name: str = "c",
    n_images: int = 400,
    statistics: GateStatistics | None = None,
    details: dict[str, Any] | None = None,
    baseline_details: dict[str, Any] | None = None,
    note: str = "",
) -> CheckOutcome:
    """The outcome of gate ``name`` of suite ``s`` (baseline variant ``dense``, seed 0),
    decided by ``decide_gate`` from one run of ``candidate`` and ``baseline`` values."""
    cand = Measurement(candidate, n_images, details or {}, note)
    base = None if baseline is None else Measurement(baseline, n_images, baseline_details or {})
    runs = None if base is None else [base]
    measured = GateMeasurements([cand], runs, seed=0, statistics=statistics)
    gate = Gate("s", variant, name, "dense")
    return decide_gate(gate, check, METRICS.get(check.metric), measured)

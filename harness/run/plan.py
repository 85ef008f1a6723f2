"""The plan of a suite (``harness show``): model, data, variants with their recipes and
checkpoint status, and which check gates which variant. Never trains, generates or
builds anything: the session runs on a cache that refuses to build and with data
generation switched off, so an unknown key is reported as such."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from robustness_harness.data.generated import no_generation
from robustness_harness.errors import HarnessError
from robustness_harness.run.session import HarnessSession
from robustness_harness.run.snapshots import read_snapshot, snapshot_path
from robustness_harness.store.cache import Cache, Entry
from robustness_harness.suite import CheckSpec, Suite, Thresholds, VariantSpec


class NotBuilt(HarnessError):
    """The plan needs a cache entry that does not exist yet."""


class ReadOnlyCache(Cache):
    """A cache that serves complete entries and refuses to build missing ones."""

    def get_or_build(self, kind: str, key: str, build: Any, *, rebuild: bool = False) -> Any:
        entry: Entry | None = self.get(kind, key, verify=False)
        if entry is None:
            raise NotBuilt(f"needs {kind} entry {key[:12]}, not built yet (pytest builds it)")
        return entry, False


def inspecting_session(session: HarnessSession) -> HarnessSession:
    """``session`` switched to a read-only view of its cache."""
    session.cache = ReadOnlyCache(session.cache.root)
    return session


def recipe(spec: VariantSpec) -> str:
    """``prune l1_filter sparsity=0.5 → finetune epochs=5 lr=0.002`` (or ``no changes``),
    in the order the steps run: quantize steps come after the fine-tune of the float model."""
    steps, quantize = [], []
    for step in spec.compress:
        params = step.params
        given = params.model_dump(exclude_unset=True) if hasattr(params, "model_dump") else params
        if step.modules:
            given = {**given, "modules": ",".join(step.modules)}
        (quantize if step.kind == "quantize" else steps).append(
            f"{step.kind} {step.method} {_args(given)}".rstrip()
        )
    if spec.finetune is not None:
        given = spec.finetune.model_dump(exclude_unset=True, exclude_none=True)
        steps.append(f"finetune {_args(given)}".rstrip())
    steps += quantize
    if spec.seed is not None:
        steps.append(f"(seed {spec.seed})")
    if spec.checkpoint is not None:
        steps.insert(0, f"from {spec.checkpoint}")
    return " → ".join(steps) or "no changes (the base model)"


def _args(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def checkpoint_status(session: HarnessSession, suite: Suite, variant: str) -> str:
    """``cached [key]``, ``not built [key]``, ``base weights [key]`` or why the key
    cannot be computed without building."""
    try:
        with no_generation():
            key = session.checkpoint_key(suite, variant)
    except HarnessError as err:  # NotBuilt, data not generated, missing weights
        return f"unknown ({err.message})"
    spec = suite.spec.variants[variant]
    if not spec.changes_weights:
        return f"{'given' if spec.checkpoint else 'base'} weights [{key[:12]}]"
    cached = session.cache.get("ckpt", key, verify=False) is not None
    return f"{'cached' if cached else 'not built'} [{key[:12]}]"


def check_text(check: CheckSpec) -> str:
    """``map drop_max 0.07 | split timeofday=night | 150 images``."""
    parts = [f"{check.metric} {_args(check.params)}".rstrip()]
    if check.reduce:
        parts[0] += f" reduce={check.reduce}"
    thresholds = Thresholds.from_check(check)
    if thresholds.set_items():
        parts.append(thresholds.describe())
    if check.baseline == "snapshot":
        parts.append(f"snapshot ±{check.tolerance:g}")
    if check.corruptions:
        severities = check.severities or [1, 2, 3, 4, 5]
        parts.append(f"{len(check.corruptions)} corruptions × severities {severities}")
    if check.split:
        parts.append("split " + ",".join(f"{k}={v}" for k, v in check.split.items()))
    if check.images:
        parts.append(f"{check.images} images")
    if check.device:
        parts.append(f"device {check.device}")
    return " | ".join(parts)


def render_plan(suite: Suite, session: HarnessSession) -> str:
    """The plan as text (see the module docstring)."""
    spec = suite.spec
    model = spec.model.name or spec.model.factory
    data = spec.data.name or f"coco {spec.data.coco.annotations}"  # type: ignore[union-attr]
    if spec.data.name:
        data += f", split {spec.data.split}"
        data += "".join(f", {k}={v}" for k, v in spec.data.params.items())
    lines = [
        f"suite {spec.suite} ({suite.path})",
        *textwrap.wrap(spec.description, 88, initial_indent="  ", subsequent_indent="  "),
        f"model     {model} ({spec.model.resolved_task})",
        f"data      {data}",
        f"seed      {session.seed(suite)}   baseline variant: {spec.baseline}",
        f"snapshot  {_snapshot_line(suite)}",
        "",
        "variants (recipe; checkpoint)",
    ]
    width = max(len(v) for v in spec.variants)
    for name, variant in spec.variants.items():
        lines.append(f"  {name:<{width}}  {recipe(variant)}")
        lines.append(f"  {'':<{width}}  checkpoint: {checkpoint_status(session, suite, name)}")
    lines += ["", "checks"]
    cwidth = max(len(c) for c in spec.checks)
    lines += [f"  {n:<{cwidth}}  {check_text(c)}" for n, c in spec.checks.items()]
    lines += ["", "gates (x: the check gates the variant)", *_matrix(suite)]
    lines.append(f"{len(spec.items())} gates")
    return "\n".join(lines)


def _matrix(suite: Suite) -> list[str]:
    spec = suite.spec
    variants = list(spec.variants)
    cwidth = max(len(c) for c in spec.checks)
    rows = [f"  {'':<{cwidth}}  " + "  ".join(variants)]
    for check in spec.checks:
        cells = ("x" if spec.gates(v, check) else "." for v in variants)
        rows.append(
            f"  {check:<{cwidth}}  "
            + "  ".join(c.center(len(v)) for c, v in zip(cells, variants, strict=True))
        )
    return [r.rstrip() for r in rows]


def _snapshot_line(suite: Suite) -> str:
    path = snapshot_path(suite)
    try:
        doc = read_snapshot(path)
    except HarnessError as err:
        return f"{path} is unusable: {err.message}"
    if doc is None:
        return f"{path} (none; record one with pytest --harness-regen)"
    n = sum(len(checks) for checks in doc["values"].values())
    return f"{Path(path)} ({n} values)"

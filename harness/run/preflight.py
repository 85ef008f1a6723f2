"""``harness validate --deep``: what would break a run, found in seconds without building.

The preflight imports the factory, loads every checkpoint the suite names into the
architecture, opens every image of every data set the suite reads, runs one small batch
through the base model (task, output contract, input size) and dry-runs each variant's
compression steps, in order, on a copy of its start model with training replaced by a
no-op (``HarnessSession.dry_run``, which also runs before every build), so that an
unsupported (architecture × method) pair shows before an hour of fine-tuning. Each problem is one
line naming the file and field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image
from torch import nn

from robustness_harness.errors import HarnessError
from robustness_harness.run.session import HarnessSession
from robustness_harness.suite import Suite

BATCH_IMAGES = 2
"""Images in the one batch run through the base model."""


class _Problems:
    """Collects one line per failed step; ``attempt`` runs a step and records its error."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.lines: list[str] = []

    def attempt(self, field: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except HarnessError as err:  # located in the suite when it names no file itself
            located = (
                err if err.file else err.with_context(file=self.suite.path, field_prefix=field)
            )
            self.lines.append(str(located))
        except Exception as exc:  # user code: report its first line, never a traceback
            first = (str(exc).strip().splitlines() or [""])[0]
            self.lines.append(f"{self.suite.path}: {field}: {type(exc).__name__}: {first}")
        return None


def preflight(session: HarnessSession, suite: Suite) -> list[str]:
    """One line per problem found in ``suite`` (empty: the run can start)."""
    problems = _Problems(suite)
    spec = suite.spec
    base = problems.attempt("model", lambda: session.start_model(suite, None))
    for name, variant in spec.variants.items():
        if variant.checkpoint is not None:
            field = f"variants.{name}.checkpoint"
            problems.attempt(field, lambda name=name: session.start_model(suite, name))
    for role in _roles(session, suite):
        data = problems.attempt(f"data ({role})", lambda role=role: session.dataset(suite, role))
        if data is not None:
            problems.attempt(f"data ({role})", lambda data=data, role=role: _open_all(data, role))
    if base is None or problems.lines:
        return problems.lines
    eval_data = session.dataset(suite)
    problems.attempt("model", lambda: _one_batch(session, suite, base, eval_data))
    for name, variant in spec.variants.items():
        if variant.compress:
            field = f"variants.{name}"
            problems.attempt(field, lambda name=name: session.dry_run(suite, name))
    return problems.lines


def _roles(session: HarnessSession, suite: Suite) -> list[str]:
    """The data sets the run reads: evaluation, and training/calibration when used."""
    roles = ["eval"]
    if suite.spec.data.has_train and any(session.trains(suite, v) for v in suite.spec.variants):
        roles.append("train")
    if suite.spec.data.calibration is not None:
        roles.append("calibration")
    return roles


def _open_all(data: Any, role: str) -> None:
    """Open every image file of ``data`` (header and integrity, no full decode)."""
    bad: list[str] = []
    for image_id in data.image_ids:
        path = data.image_path(image_id)
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as exc:
            bad.append(f"{path} ({type(exc).__name__})")
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise HarnessError(
            f"{len(bad)} of {len(data.image_ids)} {role} images cannot be opened: {shown}",
            file=str(getattr(data, "annotations_file", "")) or None,
            field="images",
            hint="fix or remove those files, or their entries in the annotations",
        )


def _one_batch(session: HarnessSession, suite: Suite, model: nn.Module, data: Any) -> None:
    """Predict the first images, which checks the task and the output contract."""
    ids = list(data.image_ids[:BATCH_IMAGES])
    session.task(suite).predict(model, data, image_ids=ids, batch_size=len(ids), device="cpu")

"""Dry runs of a variant's compression steps: an unsupported (architecture × method) pair
is one line before anything trains.

``dry_run_steps`` applies every step, in order, to a copy of the start model with
training replaced by a no-op and calibration on the example batch, so it costs seconds.
The session runs it before building a variant (a ``[prune, quantize]`` variant whose
quantization cannot work fails before its float model fine-tunes for an hour) and
``harness validate --deep`` runs the same function.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustness_harness.compress.base import CompressContext
from robustness_harness.compress.targeting import FORWARD, apply_to_modules, task_forward
from robustness_harness.errors import HarnessError
from robustness_harness.inference.input_contract import inner_model
from robustness_harness.registry import METHODS

OTHER_METHOD_HINT = (
    "use a method that supports this architecture (e.g. prune: {method: global_magnitude} "
    "works on any Conv/Linear model), or drop the step"
)


def dry_run_steps(
    model: nn.Module,
    steps: Sequence[Any],
    example: torch.Tensor,
    *,
    seed: int,
    task: str,
    suite_path: str | Path,
    variant: str,
) -> None:
    """Apply ``steps`` to a copy of ``model`` without training; a step that fails raises
    one ``HarnessError`` located at ``variants.<variant>.compress[i]`` that names the
    method and the architecture. ``task``: how the model takes the example batch (for
    ``modules:`` steps, ``robustness_harness.compress.targeting``)."""
    arch = type(inner_model(model)).__name__
    current = copy.deepcopy(model)
    ctx = CompressContext(
        example_inputs=example,
        seed=seed,
        progress=lambda _line: None,
        train=lambda *_args, **_kwargs: None,
        extras={
            "calibration_images": lambda n: example[: max(1, min(n, len(example)))],
            FORWARD: task_forward(task),
        },
    )
    for i, step in enumerate(steps):
        info = METHODS.get(step.method, file=str(suite_path), field=f"variants.{variant}")
        where = f"variants.{variant}.compress[{i}]"
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + i)
                current = apply_to_modules(info, current, step.params, ctx, step.modules)
        except HarnessError as err:
            raise _unsupported(err.message, err.field, err.hint, step.method, arch).with_context(
                file=suite_path, field_prefix=where
            ) from None
        except Exception as exc:  # e.g. torch-pruning on a layer pattern it cannot follow
            first = (str(exc).strip().splitlines() or [""])[0]
            detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
            raise _unsupported(detail, None, OTHER_METHOD_HINT, step.method, arch).with_context(
                file=suite_path, field_prefix=where
            ) from None


def _unsupported(
    detail: str, field: str | None, hint: str | None, method: str, arch: str
) -> HarnessError:
    """``<method> cannot compress <arch>: <detail>`` (the detail's own method prefix dropped)."""
    detail = detail.removeprefix(f"{method}: ")
    return HarnessError(
        f"{method} cannot compress {arch}: {detail}", field=field, hint=hint or OTHER_METHOD_HINT
    )

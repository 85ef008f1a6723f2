"""What user and plug-in code hands the harness, and how the harness calls it.

``ModelEntry`` and ``PretrainContext``: what a registered model provides (registered into
``robustness_harness.registry.MODELS``, usually through the ``robustness_harness.models``
entry points, so the core never imports ``models/`` or plug-in packages);
``import_factory``, ``call_user``, ``check_kwargs`` and ``user_path``: importing and calling
the factories, functions and files a suite names."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from robustness_harness.errors import HarnessError
from robustness_harness.inference.import_paths import ensure_importable, factory_search_path
from robustness_harness.registry import did_you_mean


@dataclass(frozen=True)
class PretrainContext:
    """What an embedded model needs to produce trained weights (ship or train + cache)."""

    cache: Any
    data_name: str | None
    data_params: dict[str, Any]
    train_data: Callable[[], Any]
    device: str
    progress: Callable[[str], None]
    model_kwargs: dict[str, Any]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: ``build(**kwargs)`` and, for embedded defaults,
    ``pretrained(ctx) -> Path`` of a safetensors file with trained weights."""

    build: Callable[..., nn.Module]
    task: Literal["detection", "classification"] = "detection"
    pretrained: Callable[[PretrainContext], Path] | None = None


def as_model_entry(obj: Any) -> ModelEntry:
    """A ``ModelEntry`` for a registered object (plain builders are wrapped)."""
    return obj if isinstance(obj, ModelEntry) else ModelEntry(build=obj)


def import_factory(spec: str, *, file: str | None = None, field: str = "model.factory") -> Any:
    """Import ``"pkg.mod:fn"`` from the installed packages, pytest's ``pythonpath`` and
    the current directory (``import_paths``); import problems become errors naming the
    field."""
    module_name, _, attr = spec.partition(":")
    folders = factory_search_path()
    ensure_importable(folders)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code
        where = ", ".join(str(f) for f in folders)
        raise HarnessError(
            f"cannot import module '{module_name}': {type(exc).__name__}: {exc}",
            file=file,
            field=field,
            hint=f"factories are imported from installed packages and from {where} (the "
            "current directory and pytest's pythonpath ini setting); run from your "
            "project's root, add its folder to pythonpath, or pip install -e it",
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise HarnessError(
            f"module '{module_name}' has no attribute '{attr}'",
            file=file,
            field=field,
            hint="write 'package.module:function'",
        ) from exc


def call_user(fn: Callable[..., Any], *, what: str, file: str | None, field: str, **kw: Any) -> Any:
    """Call user code; any exception becomes an error naming the suite field."""
    try:
        return fn(**kw)
    except HarnessError:
        raise
    except Exception as exc:
        raise HarnessError(
            f"{what} raised {type(exc).__name__}: {exc}",
            file=file,
            field=field,
            hint="fix the function or its arguments (model.kwargs)",
        ) from exc


def user_path(path: str | Path, suite_file: Path) -> Path:
    """A path from a suite, relative to the suite file's directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (suite_file.parent / p)


def check_kwargs(
    fn: Callable[..., Any], kwargs: dict[str, Any], *, what: str, file: str | None, field: str
) -> None:
    """Reject keyword arguments ``fn`` does not take, with a did-you-mean."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for key in kwargs:
        if key not in accepted:
            raise HarnessError(
                f"{what} has no parameter '{key}'",
                file=file,
                field=f"{field}.{key}",
                hint=f"{did_you_mean(key, accepted)}parameters: {', '.join(accepted) or 'none'}",
            )

"""Saving and loading model weights without pickle: safetensors plus a JSON layer structure.

A harness checkpoint is a directory holding ``model.safetensors`` (the state dict) and
``structure.json`` (layer sizes, see ``robustness_harness.compress.structure``); the cache writes
``meta.json`` beside them. Quantized models store int tensors with their scales and zero
points, and a ``quantization`` record in ``structure.json`` from which the quantized
graph is rebuilt at load. User checkpoints are single ``.safetensors`` or ``.pt``
state dicts; ``.pt`` files are read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robustness_harness.compress.qstate import decode_state, encode_state
from robustness_harness.compress.quantize import QuantRecord, quantization_record, rebuild_quantized
from robustness_harness.compress.structure import (
    ARCH_HINT,
    REBUILD_HINT,
    apply_structure,
    state_dict_mismatch,
    structure_of,
)
from robustness_harness.errors import CheckpointError

WEIGHTS_FILE = "model.safetensors"
STRUCTURE_FILE = "structure.json"
QUANTIZATION_KEY = "quantization"  # in structure.json of a quantized model
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")

StateDict = dict[str, torch.Tensor]


# -- state dicts ------------------------------------------------------------------------------


def _fold_masks(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Replace ``x_orig``/``x_mask`` pairs (active torch pruning) by ``x = x_orig * x_mask``."""
    out: StateDict = {}
    for key, value in state.items():
        if key.endswith("_mask") and f"{key[: -len('_mask')]}_orig" in state:
            continue
        if key.endswith("_orig") and f"{key[: -len('_orig')]}_mask" in state:
            base = key[: -len("_orig")]
            out[base] = value * state[f"{base}_mask"].to(value.dtype)
        else:
            out[key] = value
    return out


def plain_state_dict(model: nn.Module) -> StateDict:
    """``model``'s state dict ready for safetensors: masks folded in, CPU, contiguous, unshared."""
    return _safetensors_ready(_fold_masks(model.state_dict()))


def _safetensors_ready(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Detached CPU tensors, each contiguous with a storage of its own (safetensors needs it)."""
    out: StateDict = {}
    seen: set[int] = set()
    for key, value in state.items():
        tensor = value.detach().cpu()
        storage = tensor.untyped_storage()
        shared = storage.data_ptr() in seen
        partial = storage.nbytes() != tensor.numel() * tensor.element_size()
        if shared or partial or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


# -- harness checkpoints ----------------------------------------------------------------------


def save_checkpoint(model: nn.Module, directory: Path, *, meta: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``structure.json`` into ``directory``.

    ``meta`` goes into the safetensors header (as JSON, for provenance); the caller
    writes ``meta.json`` itself.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = {"harness_meta": json.dumps(meta, sort_keys=True, default=str)}
    tensors, structure = _serialised(model)
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata=header)
    text = json.dumps(structure, indent=1, sort_keys=True)
    (directory / STRUCTURE_FILE).write_text(text + "\n")


def _serialised(model: nn.Module) -> tuple[StateDict, dict[str, Any]]:
    """The tensors and the ``structure.json`` content that a checkpoint of ``model`` holds.

    A quantized model (``robustness_harness.compress.quantize``) is saved as its int tensors,
    scales and zero points (``robustness_harness.compress.qstate``); its structure is the float
    model's plus a ``quantization`` record from which loading rebuilds the graph.
    """
    record = quantization_record(model)
    if record is None:
        return plain_state_dict(model), structure_of(model)
    tensors, layout = encode_state(model.state_dict(), record.weight_bits)
    quantization = {**record.to_json(), "layout": layout}
    return _safetensors_ready(tensors), {**record.float_structure, QUANTIZATION_KEY: quantization}


def checkpoint_tensors(model: nn.Module) -> StateDict:
    """What ``save_checkpoint`` writes to ``model.safetensors`` for ``model``."""
    return _serialised(model)[0]


def _read_safetensors(path: Path, *, hint: str) -> StateDict:
    if not path.is_file():
        raise CheckpointError("checkpoint file is missing", file=path, hint=hint)
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(
            f"corrupt or truncated safetensors file ({type(exc).__name__}: {exc})",
            file=path,
            hint=hint,
        ) from None


def _read_structure(path: Path) -> dict[str, Any]:
    try:
        structure = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            "checkpoint structure is missing", file=path, hint=REBUILD_HINT
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"corrupt checkpoint structure ({exc})", file=path, hint=REBUILD_HINT
        ) from None
    if not isinstance(structure, dict):
        raise CheckpointError("corrupt checkpoint structure", file=path, hint=REBUILD_HINT)
    return structure


def load_checkpoint(model_builder: Callable[[], nn.Module], directory: Path) -> nn.Module:
    """Build the base model, resize it to the saved structure, load the weights (strict)."""
    directory = Path(directory)
    weights = directory / WEIGHTS_FILE
    state = _read_safetensors(weights, hint=REBUILD_HINT)
    structure = _read_structure(directory / STRUCTURE_FILE)
    model = model_builder()
    quantization = structure.get(QUANTIZATION_KEY)
    try:
        if quantization is not None:
            return _load_quantized(model, structure, state, weights)
        apply_structure(model, structure, state)
    except CheckpointError as err:
        raise err.with_context(file=weights) from None
    _load_strict(model, state, weights)
    return model


def _load_quantized(
    model: nn.Module, structure: dict[str, Any], tensors: StateDict, path: Path
) -> nn.Module:
    """Resize the float ``model`` to the saved structure, rebuild the quantized graph the
    record describes, and load the decoded int tensors into it (strict)."""
    quantization = structure[QUANTIZATION_KEY]
    float_structure = {k: v for k, v in structure.items() if k != QUANTIZATION_KEY}
    record = QuantRecord.from_json(quantization, float_structure)
    shapes = {k: torch.empty(s, device="meta") for k, s in record.float_shapes.items()}
    apply_structure(model, float_structure, shapes)
    quantized = rebuild_quantized(model, record)
    try:
        state = decode_state(tensors, quantization.get("layout") or {})
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"corrupt quantized tensors ({exc})", hint=REBUILD_HINT) from None
    expected = quantized.state_dict().keys()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        first = f"missing key {missing[0]}" if missing else f"unexpected key {unexpected[0]}"
        raise CheckpointError(
            f"quantized checkpoint does not fit the rebuilt model: {first}", hint=REBUILD_HINT
        )
    _load_strict(quantized, state, path)
    return quantized


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise CheckpointError(
            f"checkpoint does not fit {type(model).__name__}: {first}", file=path, hint=ARCH_HINT
        ) from None


# -- user checkpoints -------------------------------------------------------------------------


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _state_dict_in(obj: object, path: Path) -> StateDict:
    if _is_state_dict(obj):
        return dict(obj)  # type: ignore[arg-type]
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
    found = f"a dict with keys {list(obj)[:5]}" if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"expected a state dict (name -> tensor) or a dict with a 'state_dict' or 'model' "
        f"entry holding one; found {found}",
        file=path,
        hint="save it with torch.save(model.state_dict(), path)",
    )


def _load_error_detail(exc: Exception) -> str:
    """The informative line of a ``torch.load`` error (after its long weights_only preamble)."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _read_torch(path: Path) -> StateDict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if "Unsupported global" in str(exc):
            message = (
                "refused to unpickle: the file holds Python objects other than tensors "
                "(only weights_only=True loading is allowed)"
            )
        else:
            message = f"cannot read the checkpoint ({_load_error_detail(exc)})"
        raise CheckpointError(
            message,
            file=path,
            hint="save only the weights: torch.save(model.state_dict(), path) or "
            "safetensors.torch.save_file(model.state_dict(), path)",
        ) from None
    return _state_dict_in(obj, path)


def _strip_prefix(state: StateDict, prefix: str = "module.") -> StateDict:
    """Drop the ``module.`` prefix that (Distributed)DataParallel adds to every key."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_user_weights(model: nn.Module, path: Path) -> nn.Module:
    """Load a user's ``.safetensors`` or ``.pt``/``.pth`` state dict into ``model`` (strict)."""
    path = Path(path)
    suffix = path.suffix.lower()
    fix = "re-export the weights with safetensors.torch.save_file(model.state_dict(), path)"
    if suffix == ".safetensors":
        state = _read_safetensors(path, hint=fix)
    elif suffix in TORCH_SUFFIXES:
        if not path.is_file():
            raise CheckpointError("checkpoint file is missing", file=path, hint="check the path")
        state = _read_torch(path)
    else:
        raise CheckpointError(
            f"unsupported checkpoint format '{suffix or path.name}'",
            file=path,
            hint="use a .safetensors or .pt/.pth state dict",
        )
    state = _fold_masks(_strip_prefix(state))
    problem = state_dict_mismatch(model, state)
    if problem:
        raise CheckpointError(
            f"checkpoint does not fit {type(model).__name__}: {problem}", file=path, hint=ARCH_HINT
        )
    _check_values(model, state, path)
    _load_strict(model, state, path)
    return model


def _check_values(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse non-float tensors for float parameters (load_state_dict would cast them
    silently) and NaN weights (every prediction would be NaN)."""
    expected = model.state_dict()
    for key, value in state.items():
        want = expected[key]
        if want.is_floating_point() and not value.is_floating_point():
            raise CheckpointError(
                f"tensor '{key}' is {value.dtype}, the model expects {want.dtype}",
                file=path,
                hint="save the float weights (dequantize first), e.g. "
                "safetensors.torch.save_file(model.float().state_dict(), path)",
            )
        if value.is_floating_point() and bool(torch.isnan(value).any()):
            raise CheckpointError(
                f"tensor '{key}' holds NaN values",
                file=path,
                hint="save weights from before training diverged",
            )

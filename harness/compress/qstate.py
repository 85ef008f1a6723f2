"""State dicts of quantized models as plain tensors (for safetensors) and back, without pickle.

A quantized model's state dict holds quantized tensors (int values with scales and zero
points), packed-parameter tuples and ``torch.dtype`` values, none of which safetensors
stores. ``encode_state`` turns it into plain tensors plus a JSON ``layout`` that says how
to rebuild each entry; ``decode_state`` inverts it exactly. With ``weight_bits=4`` the
int values of quantized tensors that lie in [-8, 7] are packed two per byte (layers a
4-bit scheme keeps at 8 bits are stored as int8).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch

from robustness_harness.compress.structure import REBUILD_HINT
from robustness_harness.errors import CheckpointError

Layout = dict[str, Any]
INT4_MIN, INT4_MAX = -8, 7
_QDTYPES = {"qint8": torch.qint8, "quint8": torch.quint8, "qint32": torch.qint32}
_INT_OF = {torch.qint8: torch.int8, torch.quint8: torch.uint8, torch.qint32: torch.int32}
_PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric)


# -- 4-bit packing ----------------------------------------------------------------------------


def _fits_int4(values: torch.Tensor) -> bool:
    return not values.numel() or INT4_MIN <= int(values.min()) <= int(values.max()) <= INT4_MAX


def pack_int4(values: torch.Tensor) -> torch.Tensor:
    """Flat uint8 tensor holding two values of ``values`` (ints in [-8, 7]) per byte."""
    if not _fits_int4(values):
        raise ValueError(f"4-bit packing needs values in [{INT4_MIN}, {INT4_MAX}]")
    flat = values.flatten().to(torch.int16)
    nibbles = (flat - INT4_MIN).to(torch.uint8)
    if nibbles.numel() % 2:
        nibbles = torch.cat([nibbles, nibbles.new_zeros(1)])
    return nibbles[0::2] | (nibbles[1::2] << 4)


def unpack_int4(packed: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """The int8 tensor of ``shape`` that ``pack_int4`` packed into ``packed``."""
    nibbles = torch.stack([packed & 0xF, packed >> 4], dim=1).flatten()
    count = math.prod(shape)
    return (nibbles[:count].to(torch.int16) + INT4_MIN).to(torch.int8).reshape(shape)


# -- encoding ---------------------------------------------------------------------------------


def _encode_qtensor(key: str, value: torch.Tensor, weight_bits: int) -> tuple[dict, Layout]:
    qscheme = value.qscheme()
    ints = value.int_repr()
    entry: Layout = {"kind": "qtensor", "dtype": str(value.dtype).removeprefix("torch.")}
    entry["shape"] = list(value.shape)
    if weight_bits == 4 and value.dtype == torch.qint8 and _fits_int4(ints):
        tensors = {key: pack_int4(ints)}
        entry["bits"] = 4
    else:
        tensors = {key: ints}
    if qscheme in _PER_CHANNEL:
        entry["axis"] = value.q_per_channel_axis()
        tensors[f"{key}:scales"] = value.q_per_channel_scales()
        tensors[f"{key}:zero_points"] = value.q_per_channel_zero_points()
    elif qscheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        tensors[f"{key}:scale"] = torch.tensor(value.q_scale(), dtype=torch.float64)
        tensors[f"{key}:zero_point"] = torch.tensor(value.q_zero_point(), dtype=torch.int64)
    else:
        raise CheckpointError(f"cannot save quantized tensor '{key}' with qscheme {qscheme}")
    return tensors, entry


def _encode(key: str, value: Any, weight_bits: int, tensors: dict) -> Layout:
    if isinstance(value, torch.Tensor):
        if value.is_quantized:
            parts, entry = _encode_qtensor(key, value.detach(), weight_bits)
            tensors.update(parts)
            return entry
        tensors[key] = value.detach()
        return {"kind": "tensor"}
    if value is None:
        return {"kind": "none"}
    if isinstance(value, torch.dtype):
        return {"kind": "dtype", "value": str(value).removeprefix("torch.")}
    if isinstance(value, tuple | list):
        items = [_encode(f"{key}.{i}", item, weight_bits, tensors) for i, item in enumerate(value)]
        return {"kind": "tuple", "items": items}
    raise CheckpointError(
        f"cannot save state entry '{key}' of type {type(value).__name__}",
        hint="quantized checkpoints hold tensors, quantized tensors, tuples and dtypes only",
    )


def encode_state(state: Mapping[str, Any], weight_bits: int = 8) -> tuple[dict, Layout]:
    """``(tensors, layout)``: plain CPU tensors for safetensors and how to rebuild ``state``.

    ``layout`` holds one entry per state key and the modules' state-dict versions
    (quantized modules read their state differently by version).
    """
    tensors: dict[str, torch.Tensor] = {}
    entries = {key: _encode(key, value, weight_bits, tensors) for key, value in state.items()}
    metadata = getattr(state, "_metadata", None) or {}
    versions = {prefix: meta.get("version") for prefix, meta in metadata.items()}
    layout = {"entries": entries, "versions": versions}
    return {k: v.cpu() for k, v in tensors.items()}, layout


# -- decoding ---------------------------------------------------------------------------------


def _tensor(tensors: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in tensors:
        raise CheckpointError(f"quantized checkpoint lacks tensor '{key}'", hint=REBUILD_HINT)
    return tensors[key]


def _decode_qtensor(key: str, entry: Layout, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    dtype = _QDTYPES.get(entry.get("dtype", ""))
    if dtype is None:
        raise CheckpointError(
            f"unknown quantized dtype {entry.get('dtype')!r} for '{key}'", hint=REBUILD_HINT
        )
    ints = _tensor(tensors, key)
    if entry.get("bits") == 4:
        ints = unpack_int4(ints, entry["shape"])
    ints = ints.to(_INT_OF[dtype]).reshape(entry["shape"])
    if "axis" in entry:
        return torch._make_per_channel_quantized_tensor(
            ints,
            _tensor(tensors, f"{key}:scales"),
            _tensor(tensors, f"{key}:zero_points"),
            int(entry["axis"]),
        )
    scale = float(_tensor(tensors, f"{key}:scale"))
    zero_point = int(_tensor(tensors, f"{key}:zero_point"))
    return torch._make_per_tensor_quantized_tensor(ints, scale, zero_point)


def _decode(key: str, entry: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if kind == "tensor":
        return _tensor(tensors, key)
    if kind == "qtensor":
        return _decode_qtensor(key, entry, tensors)
    if kind == "none":
        return None
    if kind == "dtype" and isinstance(getattr(torch, str(entry.get("value")), None), torch.dtype):
        return getattr(torch, entry["value"])
    if kind == "tuple" and isinstance(entry.get("items"), list):
        return tuple(_decode(f"{key}.{i}", item, tensors) for i, item in enumerate(entry["items"]))
    raise CheckpointError(f"unreadable layout entry for '{key}': {entry!r}", hint=REBUILD_HINT)


def decode_state(tensors: Mapping[str, torch.Tensor], layout: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict (with module versions) that ``encode_state`` turned into ``tensors``
    and ``layout``."""
    entries, versions = layout.get("entries"), layout.get("versions")
    if not isinstance(entries, dict) or not isinstance(versions, dict):
        raise CheckpointError("quantized checkpoint has no readable layout", hint=REBUILD_HINT)
    state = OrderedDict((key, _decode(key, entry, tensors)) for key, entry in entries.items())
    state._metadata = OrderedDict((k, {"version": v}) for k, v in versions.items())  # type: ignore[attr-defined]
    return state

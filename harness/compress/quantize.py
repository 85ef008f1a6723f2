"""Post-training quantization: ``ptq_int8`` and ``int4_weight`` (FX graph mode, x86 backend).

Both calibrate activation observers (histogram, 8-bit) on N training images and quantize
Conv/Linear weights per output channel (symmetric): to int8 for ``ptq_int8``, to 4 bits
for ``int4_weight`` (run by the int8 kernels; stored two per byte; the first layer and
the output layers keep 8-bit weights, see ``make_record``). The 4-bit range is
the narrow symmetric [-7, 7]: with [-8, 7] a symmetric scale maps the largest weight to
7.5, which rounds to 8 (torch clamps only to the int8 range), outside 4 bits.
Quantized parts run real int8 kernels (fbgemm/oneDNN) on the CPU only.

Why FX (``torch.ao.quantization.quantize_fx``): in torch 2.13 the pt2e flow moved to
torchao, whose ``convert_pt2e`` gives a reference graph (quantize → float op →
dequantize) that is only fast after ``torch.compile``; FX ``convert_fx`` gives int8
modules directly, and its graph depends only on the float model's structure and the
qconfig, so a checkpoint can rebuild it deterministically and load the int tensors.

Classifiers are quantized whole. torchvision detectors cannot be traced whole
(data-dependent post-processing), so their traceable parts are quantized
(``DETECTOR_PARTS``): backbone with FPN and head for FCOS/RetinaNet and SSD/SSDlite;
backbone with FPN, RPN head and the RoI box head (TwoMLPHead) for Faster R-CNN. The
transform, anchors, RoI pooling, box decoding, the box predictor and NMS stay in float;
ops without int8 kernels in the x86 backend (e.g. the head's GroupNorm) run in float
between dequantize and quantize.

Gradient attacks and saliency cannot differentiate int8 kernels, so they go through the
**fake-quant twin** (``fake_quant_twin``): the float model's observed FX graph (BN folded,
as the quantized graph) with each activation observer replaced by per-tensor fake
quantization at the real model's calibrated scale and zero point (saved with it, see
``QuantizedPart``) and each Conv/Linear weight fake-quantized per channel with the real
model's weight scales; ``torch.fake_quantize_*`` pass gradients straight through.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal, get_args

import torch
from pydantic import Field, Strict
from torch import nn
from torch.ao.nn.quantized.modules.utils import WeightedQuantizedModule
from torch.ao.quantization import QConfig, QConfigMapping, get_default_qconfig_mapping
from torch.ao.quantization.observer import ObserverBase, PerChannelMinMaxObserver
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
from torch.nn.utils import parametrize
from torch.utils._pytree import tree_leaves, tree_map
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.ssd import SSD

from robustness_harness.compress.base import CompressContext
from robustness_harness.compress.graph import first_inputs, trace_plan
from robustness_harness.compress.names import IgnoreParams, inside, matching
from robustness_harness.compress.prune import (
    count_parameters,
    effective_tensor,
    finalize_pruning,
    prunable_layers,
)
from robustness_harness.compress.structure import REBUILD_HINT, structure_of
from robustness_harness.compress.targeting import FORWARD, PARTS, task_forward
from robustness_harness.errors import CheckpointError, HarnessError
from robustness_harness.registry import register_compression

BACKEND = "x86"
RECORD_ATTR = "_harness_quantization"
INT4_RANGE = (-7, 7)  # narrow symmetric 4-bit, see the module docstring
CALIBRATION_BATCH = 16
#: Bump when what a quantized checkpoint holds changes (it goes into checkpoint keys).
CHECKPOINT_FORMAT = "fake-quant-twin-2"
_QRANGE = {torch.quint8: (0, 255), torch.qint8: (-128, 127), torch.qint32: (-(2**31), 2**31 - 1)}
Kind = Literal["classifier", "detector", "parts"]
#: The traceable parts quantized per detector family: ``(module path, takes the feature
#: list)``; a part taking the list is wrapped so that its modules are named ``head.*``.
DETECTOR_PARTS: tuple[tuple[tuple[type, ...], tuple[tuple[str, bool], ...]], ...] = (
    ((FCOS, RetinaNet, SSD), (("backbone", False), ("head", True))),
    ((FasterRCNN,), (("backbone", False), ("rpn.head", True), ("roi_heads.box_head", False))),
)
_QUIET = (
    "torch.ao.quantization is deprecated",
    "Please use quant_min and quant_max",
    "must run observer before calling calculate_qparams",
    "quantized tensor creation functions",
)


class QuantizeParams(IgnoreParams):
    """``calibration_images``: training images the activation observers see (first N);
    ``ignore``: modules that stay in float."""

    calibration_images: Annotated[int, Strict()] = Field(64, ge=1)


@dataclass(frozen=True)
class QuantRecord:
    """How a model was quantized: enough to rebuild its quantized graph at load.

    ``kind``: ``classifier`` (whole model), ``detector`` (a torchvision detector's
    ``DETECTOR_PARTS``) or ``parts`` (the parts a step's ``modules:`` named);
    ``example_shapes``: tracing inputs (the image batch; otherwise each part's input
    in turn, batch dimension 1); ``parts``: the quantized parts as ``(module
    path, feature maps it takes)``, 0 for a part taking one tensor;
    ``float_structure``/``float_shapes``: layer sizes
    (``robustness_harness.compress.structure``) and state-dict shapes of the float model;
    ``int8_layers``: modules kept at 8-bit weights under a 4-bit scheme;
    ``float_layers``: modules left in float (the step's ``ignore``).
    """

    method: str
    weight_bits: int
    kind: Kind
    example_shapes: tuple[tuple[int, ...], ...]
    float_structure: dict[str, Any]
    float_shapes: dict[str, tuple[int, ...]]
    int8_layers: tuple[str, ...] = ()
    parts: tuple[tuple[str, int], ...] = ()
    float_layers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-able fields, without ``float_structure`` (the checkpoint's structure itself)."""
        data = asdict(self)
        del data["float_structure"]
        return data

    @classmethod
    def from_json(cls, data: Any, float_structure: dict[str, Any]) -> QuantRecord:
        """The record ``to_json`` wrote; ``CheckpointError`` when it is malformed."""
        try:
            record = cls(
                method=str(data["method"]),
                weight_bits=int(data["weight_bits"]),
                kind=data["kind"],
                example_shapes=tuple(tuple(int(n) for n in s) for s in data["example_shapes"]),
                float_structure=float_structure,
                float_shapes={
                    str(k): tuple(int(n) for n in s) for k, s in data["float_shapes"].items()
                },
                int8_layers=tuple(str(name) for name in data.get("int8_layers", ())),
                parts=_parts_of(data),
                float_layers=tuple(str(name) for name in data.get("float_layers", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"corrupt quantization record ({exc!r})", hint=REBUILD_HINT
            ) from None
        if record.kind not in get_args(Kind) or record.weight_bits not in (4, 8):
            raise CheckpointError(
                f"corrupt quantization record (kind {record.kind!r}, "
                f"weight_bits {record.weight_bits})",
                hint=REBUILD_HINT,
            )
        return record


def _parts_of(data: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """A record's ``parts``; records written before Faster R-CNN/SSD support have none:
    a detector's are then backbone and head."""
    if "parts" in data:
        return tuple((str(path), int(levels)) for path, levels in data["parts"])
    if data["kind"] == "detector":
        return (("backbone", 0), ("head", len(data["example_shapes"]) - 1))
    return ()


def quantization_record(model: nn.Module) -> QuantRecord | None:
    """The record of a model made by a quantize method, None for a float model."""
    return model.__dict__.get(RECORD_ATTR)


class QuantizedPart(nn.Module):
    """A quantized FX graph (``graph``) that runs on the CPU wherever its inputs are.

    Quantized kernels exist for the CPU only, so ``.to(device)`` leaves it there; inputs
    move to the CPU and outputs back to the device of the first input tensor.
    ``twin_scales``/``twin_zero_points``: the calibrated qparams of the observed graph's
    activation observers, in graph order (1 and 0 for float ones), for the fake-quant twin.
    ``dtype``: an empty float32 CPU parameter, what code asking a part for
    ``next(part.parameters())`` to learn its inputs' dtype and device should get
    (facenet-pytorch's MTCNN does; the quantized weights are packed, not parameters).
    """

    def __init__(self, graph: nn.Module, activations: list[tuple[float, int]]) -> None:
        super().__init__()
        self.dtype = nn.Parameter(torch.empty(0), requires_grad=False)
        self.graph = graph
        scales, zero_points = zip(*activations, strict=True) if activations else ((), ())
        self.register_buffer("twin_scales", torch.tensor(scales, dtype=torch.float64))
        self.register_buffer("twin_zero_points", torch.tensor(zero_points, dtype=torch.int64))

    def forward(self, x: Any) -> Any:
        tensors = [t for t in tree_leaves(x) if isinstance(t, torch.Tensor)]
        device = tensors[0].device if tensors else torch.device("cpu")
        out = self.graph(tree_map(lambda t: _moved(t, torch.device("cpu")), x))
        return out if device.type == "cpu" else tree_map(lambda t: _moved(t, device), out)

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> QuantizedPart:
        return self  # stays on the CPU, in its quantized dtypes


class _FeatureLevels(nn.Module):
    """A detector head taking its feature list as indexable input (FX cannot iterate it)."""

    def __init__(self, head: nn.Module, levels: int) -> None:
        super().__init__()
        self.head = head
        self.levels = levels

    def forward(self, features: list[torch.Tensor]) -> Any:
        return self.head([features[i] for i in range(self.levels)])


def _moved(t: Any, device: torch.device) -> Any:
    return t.to(device) if isinstance(t, torch.Tensor) else t


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide torch.ao's deprecation and uncalibrated-observer warnings (expected here)."""
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=f".*{message}")
        yield


def qconfig_mapping(weight_bits: int) -> QConfigMapping:
    """x86 defaults (8-bit histogram activations, per-channel symmetric int8 weights);
    with ``weight_bits=4`` the weight range is ``INT4_RANGE``."""
    mapping = get_default_qconfig_mapping(BACKEND)
    if weight_bits == 4:
        activation = mapping.global_qconfig.activation
        weight = PerChannelMinMaxObserver.with_args(
            dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric,
            quant_min=INT4_RANGE[0],
            quant_max=INT4_RANGE[1],
        )
        mapping.set_global(QConfig(activation=activation, weight=weight))
    return mapping


# -- building -----------------------------------------------------------------------------------


def detector_parts(model: nn.Module) -> tuple[tuple[str, bool], ...] | None:
    """The quantized parts of a torchvision detector (``DETECTOR_PARTS``), None otherwise."""
    for families, parts in DETECTOR_PARTS:
        if isinstance(model, families):
            return parts
    return None


def _part_inputs(
    model: nn.Module, image: torch.Tensor, parts: tuple[tuple[str, bool], ...]
) -> list[list[torch.Tensor]]:
    """Zeros shaped as each part's input (its feature list, or one tensor) when the
    detector (eval mode) runs on ``image``, batch dimension 1 (the RoI box head: one RoI)."""
    modules = [model.get_submodule(path) for path, _ in parts]
    seen = first_inputs(modules, lambda: model([image]))
    inputs = []
    for (path, listed), module in zip(parts, modules, strict=True):
        if module not in seen:
            raise HarnessError(
                f"quantize: {type(model).__name__}.{path} did not run on a calibration image",
                field="quantize.method",
                hint="quantize a detector whose eval-mode forward runs every part",
            )
        value = seen[module]
        tensors = list(value.values()) if isinstance(value, dict) else value
        inputs.append([t.new_zeros(1, *t.shape[1:]) for t in (tensors if listed else [tensors])])
    return inputs


def first_and_output_layers(model: nn.Module, image: torch.Tensor, method: str) -> list[str]:
    """Names of the first Conv/Linear layer and of the layers producing the outputs (a
    classifier's logits, a detector head's class/box/centerness convs)."""
    names = {module: name for name, module in model.named_modules()}
    layers = prunable_layers(model)
    try:
        outputs = trace_plan(model, image[None], method=method, batch=1).keep
    except HarnessError:  # not a plain classifier: keep the first layer only
        outputs = []
    return list(dict.fromkeys([name for name, _ in layers[:1]] + [names[m] for m in outputs]))


def make_record(
    model: nn.Module,
    method: str,
    weight_bits: int,
    image: torch.Tensor,
    *,
    targets: dict[str, torch.Tensor] | None = None,
    ignore: Sequence[str] = (),
) -> QuantRecord:
    """The record of quantizing the float ``model`` (eval mode), traced with ``image`` (CHW):
    the whole model, a detector's ``DETECTOR_PARTS`` or the ``targets`` (``{part name:
    an input it got}``); ``ignore``: names or patterns of modules left in float.

    With 4-bit weights the first and output layers stay at 8 bits, as usual for 4-bit
    schemes (measured on toydrive-fcos, 100 val images: mAP 0.507 float, 0.494 with
    them at 8 bits, 0.125 with every layer at 4 bits).
    """
    floats = matching(model, ignore, field="ignore", method=method)
    if targets:
        kind: Kind = "parts"
        parts = tuple((name, False) for name in targets)
        inputs = [[t.new_zeros(1, *t.shape[1:])] for t in targets.values()]
        int8 = [
            f"{name}.{layer}"
            for name, t in targets.items()
            for layer in _int8_layers(model.get_submodule(name), t[0], method, weight_bits)
        ]
    else:
        detector = detector_parts(model)
        kind = "classifier" if detector is None else "detector"
        parts = detector or ()
        with torch.no_grad():
            inputs = [[image[None]]] if detector is None else _part_inputs(model, image, parts)
        int8 = _int8_layers(model, image, method, weight_bits)
    return QuantRecord(
        method=method,
        weight_bits=weight_bits,
        kind=kind,
        example_shapes=tuple(tuple(e.shape) for tensors in inputs for e in tensors),
        float_structure=structure_of(model),
        float_shapes={k: tuple(v.shape) for k, v in model.state_dict().items()},
        int8_layers=tuple(name for name in int8 if not inside(name, floats)),
        parts=tuple(
            (path, len(tensors) if listed else 0)
            for (path, listed), tensors in zip(parts, inputs if parts else (), strict=True)
        ),
        float_layers=tuple(floats),
    )


def _int8_layers(model: nn.Module, example: torch.Tensor, method: str, bits: int) -> list[str]:
    """The layers kept at 8-bit weights under 4-bit ones (none at 8 bits)."""
    return first_and_output_layers(model, example, method) if bits < 8 else []


def _prepare(module: nn.Module, mapping: QConfigMapping, example: Any, method: str) -> nn.Module:
    try:
        return prepare_fx(module, mapping, (example,))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HarnessError(
            f"{method}: torch.fx cannot trace {type(module).__name__} ({first})",
            field="quantize.method",
            hint="quantize models whose forward torch.fx can trace (no data-dependent "
            "Python control flow), or torchvision FCOS, RetinaNet, Faster R-CNN or SSD "
            "detectors",
        ) from None


def _mapping(record: QuantRecord, path: str = "", listed: bool = False) -> QConfigMapping:
    """The qconfig of the part at ``path`` (``""``: the whole model): its
    ``record.int8_layers`` keep 8-bit weights and its ``float_layers`` stay float, named
    within the part (``head.*`` in the wrapper of a part taking the feature list, whose
    ``torch.cat`` stays float)."""
    mapping = qconfig_mapping(record.weight_bits)
    if listed:  # per-level outputs: a quantized cat would clamp all to the first's range
        mapping.set_object_type(torch.cat, None)
    int8 = qconfig_mapping(8).global_qconfig
    prefix = f"{path}." if path else ""
    for names, qconfig in ((record.int8_layers, int8), (record.float_layers, None)):
        for name in names:
            if name.startswith(prefix):
                inner = name.removeprefix(prefix)
                mapping.set_module_name(f"head.{inner}" if listed else inner, qconfig)
    return mapping


class FloatPReLU(nn.PReLU):
    """An ``nn.PReLU`` that FX quantization leaves in float (between dequantize and
    quantize): torch's ``quantized::prelu`` kernel gives wrong values (torch 2.13, x86:
    off by up to 85 quantization steps; ``tests/unit/test_quantize_prelu.py``), and
    lowering replaces exactly ``nn.PReLU``, whatever its qconfig."""


def _float_prelus(model: nn.Module) -> None:
    for module in model.modules():
        if type(module) is nn.PReLU:
            module.__class__ = FloatPReLU


def _observed(model: nn.Module, record: QuantRecord) -> tuple[nn.Module, list[str]]:
    """A CPU eval copy of the float ``model`` with its quantized parts FX-prepared
    (observers inserted), and those parts' attribute names (``""``: the whole model)."""
    model = copy.deepcopy(model).cpu().eval()
    _float_prelus(model)
    examples = [torch.zeros(shape) for shape in record.example_shapes]
    if record.kind == "classifier":
        return _prepare(model, _mapping(record), examples[0], record.method), [""]
    for path, levels in record.parts:
        inputs, examples = examples[: max(1, levels)], examples[max(1, levels) :]
        part = model.get_submodule(path)
        if levels:  # takes the feature list
            part, inputs = _FeatureLevels(part, levels), [inputs]
        mapping = _mapping(record, path, listed=levels > 0)
        model.set_submodule(path, _prepare(part, mapping, inputs[0], record.method))
    return model, [path for path, _ in record.parts]


def _parts(
    model: nn.Module, names: list[str], fn: Callable[[nn.Module, str], nn.Module]
) -> nn.Module:
    """``model`` with each part ``names[i]`` (``""``: the model itself) replaced by
    ``fn(part, name)``."""
    for name in names:
        if not name:
            return fn(model, name)
        model.set_submodule(name, fn(model.get_submodule(name), name))
    return model


def _observers(graph: nn.Module) -> list[tuple[str, ObserverBase]]:
    """The activation observers of a prepared graph, in order (shared ones repeated)."""
    return [(n, m) for n, m in graph._modules.items() if isinstance(m, ObserverBase)]


def _activation_qparams(graph: nn.Module) -> list[tuple[float, int]]:
    """``(scale, zero_point)`` of each observer of ``graph`` (``(1, 0)`` for float ones)."""
    out = []
    for _, observer in _observers(graph):
        if observer.dtype in _QRANGE:
            scale, zero_point = observer.calculate_qparams()
            out.append((float(scale), int(zero_point)))
        else:
            out.append((1.0, 0))
    return out


def _computed_once(graph: nn.Module) -> None:
    """Each observer's qparams computed once: convert_fx asks a shared observer once per
    use (SSDlite's head: 80 asks of 30 observers), and a histogram observer's search
    takes up to ~0.6 s on skewed activations."""
    for _, observer in _observers(graph):
        if observer.dtype not in _QRANGE:
            continue
        qparams = observer.calculate_qparams()
        observer.calculate_qparams = lambda qparams=qparams: qparams  # type: ignore[method-assign]


def _converted(graph: nn.Module, _name: str) -> QuantizedPart:
    _computed_once(graph)
    activations = _activation_qparams(graph)  # before convert_fx, which consumes observers
    return QuantizedPart(convert_fx(graph), activations)


def build_quantized(
    model: nn.Module,
    record: QuantRecord,
    batches: Sequence[torch.Tensor] = (),
    forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
) -> nn.Module:
    """Quantize a copy of the float ``model`` as ``record`` says: prepare, run ``batches``
    (B, C, H, W images in [0, 1]) through the observers by ``forward(model, batch)``
    (default: a classifier on the batch, a detector on its list of images), convert.
    Without batches the observers stay empty: a skeleton whose quantized tensors a
    checkpoint then fills."""
    if forward is None:
        forward = task_forward("classification" if record.kind == "classifier" else "detection")
    with _quiet(), torch.no_grad():
        observed, parts = _observed(model, record)
        for batch in batches:
            forward(observed, batch)
        quantized = _parts(observed, parts, _converted)
    quantized.__dict__[RECORD_ATTR] = record
    return quantized.eval()


def rebuild_quantized(model: nn.Module, record: QuantRecord) -> nn.Module:
    """The quantized graph of ``record`` over a float ``model`` of the recorded structure,
    with placeholder values (zeroed float weights, empty observers) for a state dict to fill."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.zero_()
    return build_quantized(model, record)


# -- the fake-quant twin --------------------------------------------------------------------------


class _FakeQuantize(nn.Module):
    """Per-tensor affine fake quantization at fixed qparams (straight-through gradient)."""

    def __init__(self, scale: float, zero_point: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.scale, self.zero_point = scale, zero_point
        self.quant_min, self.quant_max = _QRANGE[dtype]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(
            x, self.scale, self.zero_point, self.quant_min, self.quant_max
        )


class _FakeQuantWeight(nn.Module):
    """A weight parametrization: per-channel fake quantization with the qparams of a real
    quantized weight (its int values dequantized, with straight-through gradients)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scales", weight.q_per_channel_scales().float())
        self.register_buffer("zero_points", weight.q_per_channel_zero_points().int())
        self.axis = weight.q_per_channel_axis()
        self.quant_min, self.quant_max = _QRANGE[weight.dtype]

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_channel_affine(
            weight, self.scales, self.zero_points, self.axis, self.quant_min, self.quant_max
        )


def _module_outputs(
    graph: nn.Module, quantized: dict[str, nn.Module]
) -> dict[str, tuple[float, int]]:
    """``(scale, zero_point)`` of the observers right after a module that is a quantized
    module (with its own output qparams) in the converted graph: a module called several
    times (a detector head, once per feature level) has one output scale there, not the
    per-call observers' scales."""
    out = {}
    for node in graph.graph.nodes:  # type: ignore[union-attr]
        producer = node.args[0] if node.op == "call_module" and node.args else None
        if getattr(producer, "op", None) != "call_module":
            continue
        module = quantized.get(str(producer.target))
        scale, zero_point = getattr(module, "scale", None), getattr(module, "zero_point", None)
        if isinstance(scale, float) and isinstance(zero_point, int):
            out[str(node.target)] = (scale, zero_point)
    return out


def _fake_quantized(observed: nn.Module, real: QuantizedPart) -> nn.Module:
    """``observed`` (a prepared graph) with the activation qparams and weight qparams of
    its converted counterpart ``real`` as fake quantization."""
    observers = _observers(observed)
    if len(observers) != real.twin_scales.numel():
        raise CheckpointError(
            f"the quantized model holds {real.twin_scales.numel()} activation scales, "
            f"its float model has {len(observers)} observers",
            hint=REBUILD_HINT,
        )
    quantized = dict(real.graph.named_modules())
    outputs = _module_outputs(observed, quantized)
    saved = zip(real.twin_scales.tolist(), real.twin_zero_points.tolist(), strict=True)
    for (name, observer), qparams in zip(observers, saved, strict=True):
        if observer.dtype not in _QRANGE:  # a float value: no rounding
            setattr(observed, name, nn.Identity())
            continue
        scale, zero_point = outputs.get(name, qparams)
        setattr(observed, name, _FakeQuantize(scale, int(zero_point), observer.dtype))
    for name, module in list(observed.named_modules()):
        target = quantized.get(name)
        if isinstance(target, WeightedQuantizedModule) and callable(
            getattr(target, "weight", None)
        ):
            layer = module if "weight" in module._parameters else module[0]
            parametrize.register_parametrization(layer, "weight", _FakeQuantWeight(target.weight()))
    return observed


def fake_quant_twin(float_model: nn.Module, quantized: nn.Module) -> nn.Module:
    """The differentiable twin of ``quantized`` (made by a quantize method from
    ``float_model``): the float model's observed graph with fake-quantized activations
    (the calibrated qparams of ``quantized``) and weights (its per-channel weight qparams).
    Its outputs match ``quantized``'s closely; gradients pass straight through the
    rounding. ``CheckpointError`` when ``float_model`` is not the model quantized."""
    record = quantization_record(quantized)
    if record is None:
        raise ValueError("fake_quant_twin needs a model made by a quantize method")
    shapes = {k: tuple(v.shape) for k, v in float_model.state_dict().items()}
    if shapes != record.float_shapes:
        raise CheckpointError(
            f"the float model does not fit the quantized model's record ({record.method})",
            hint=REBUILD_HINT,
        )
    with _quiet():
        observed, parts = _observed(float_model, record)
        twin = _parts(observed, parts, lambda g, name: _fake_quantized(g, _part(quantized, name)))
    return twin.eval()


def _part(model: nn.Module, name: str) -> QuantizedPart:
    part = model.get_submodule(name)
    assert isinstance(part, QuantizedPart)
    return part


# -- the methods ----------------------------------------------------------------------------------


def calibration_images(ctx: CompressContext, n: int) -> torch.Tensor:
    """Up to ``n`` calibration images: ``ctx.extras["calibration_images"](n)`` (the session
    gives training images) or else ``ctx.example_inputs``."""
    source = ctx.extras.get("calibration_images")
    images = source(n) if callable(source) else ctx.example_inputs
    return images[:n].float().cpu()


def _quantize(
    model: nn.Module, params: QuantizeParams, ctx: CompressContext, method: str, bits: int
) -> nn.Module:
    if quantization_record(model) is not None:
        raise HarnessError(
            f"{method}: the model is already quantized",
            field="compress",
            hint="use one quantize step, as the last compress step",
        )
    model = finalize_pruning(model).cpu().eval()
    images = calibration_images(ctx, params.calibration_images)
    if len(images) == 0:
        raise HarnessError(f"{method}: no calibration images", hint="give the suite training data")
    targets = ctx.extras.get(PARTS)
    record = make_record(model, method, bits, images[0], targets=targets, ignore=params.ignore)
    forward = ctx.extras.get(FORWARD) if targets else None
    quantized = build_quantized(model, record, images.split(CALIBRATION_BATCH), forward)
    short = f" (only {len(images)} available)" if len(images) < params.calibration_images else ""
    layers = sum(1 for _ in quantized_weights(quantized))
    kept = f" ({len(record.int8_layers)} at 8 bits)" if record.int8_layers else ""
    if record.float_layers:
        kept += f" ({len(record.float_layers)} modules left in float)"
    if targets:
        kept += f" in {', '.join(targets)}"
    ctx.progress(
        f"{method}: {layers} layers quantized{kept}, calibrated on {len(images)} images{short}"
    )
    return quantized


@register_compression("quantize", "ptq_int8", params=QuantizeParams, uses="calibration")
def ptq_int8(model: nn.Module, params: QuantizeParams, ctx: CompressContext) -> nn.Module:
    """Static int8 post-training quantization (per-channel weights, calibrated activations)."""
    return _quantize(model, params, ctx, "ptq_int8", 8)


@register_compression("quantize", "int4_weight", params=QuantizeParams, uses="calibration")
def int4_weight(model: nn.Module, params: QuantizeParams, ctx: CompressContext) -> nn.Module:
    """4-bit per-channel symmetric weights ([-7, 7]) with calibrated 8-bit activations;
    the first layer and the output layers keep 8-bit weights."""
    return _quantize(model, params, ctx, "int4_weight", 4)


def split_quantize_steps(
    steps: Sequence[Any], *, file: str | None = None, field: str | None = None
) -> tuple[list[Any], list[Any]]:
    """``(float steps, quantize steps)`` of a variant's compress steps; a quantize step
    may only come last (a quantized model can be neither pruned nor quantized again)."""
    kinds = [step.kind for step in steps]
    if "quantize" not in kinds:
        return list(steps), []
    first = kinds.index("quantize")
    if first != len(steps) - 1:
        raise HarnessError(
            f"compress step {first + 1} quantizes, but step {first + 2} follows it",
            file=file,
            field=field,
            hint="make the quantize step the last compress step (prune first, then quantize)",
        )
    return list(steps[:first]), list(steps[first:])


# -- measuring ------------------------------------------------------------------------------------


def quantized_weights(model: nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(weight, bias)`` of every quantized Conv/Linear module (weight quantized)."""
    for module in model.modules():
        if isinstance(module, WeightedQuantizedModule) and hasattr(module, "_weight_bias"):
            yield module._weight_bias()


def parameter_counts(model: nn.Module) -> tuple[int, int, float]:
    """``(params, nonzero params, sparsity)`` of a float or quantized model.

    Quantized Conv/Linear weights and biases live in packed parameters, not in
    ``parameters()``; they are counted from their (int) values. Sparsity is the share
    of zero Conv/Linear weights, float or quantized.
    """
    total, nonzero = count_parameters(model)
    weights = [effective_tensor(m, "weight") for _, m in prunable_layers(model)]
    for weight, bias in quantized_weights(model):
        for tensor in (weight.int_repr() - _zero_points(weight), bias):
            if tensor is not None:
                total += tensor.numel()
                nonzero += int(torch.count_nonzero(tensor))
        weights.append(weight.int_repr() - _zero_points(weight))
    numel = sum(w.numel() for w in weights)
    zeros = sum(w.numel() - int(torch.count_nonzero(w)) for w in weights)
    return total, nonzero, zeros / numel if numel else 0.0


def _zero_points(weight: torch.Tensor) -> torch.Tensor | int:
    if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        shape = [1] * weight.dim()
        shape[weight.q_per_channel_axis()] = -1
        return weight.q_per_channel_zero_points().view(shape)
    return weight.q_zero_point()


def is_quantized(model: nn.Module) -> bool:
    """True when ``model`` holds quantized parts."""
    return any(isinstance(m, QuantizedPart) for m in model.modules())


def quantized_flops(model: nn.Module, *inputs: Any) -> int:
    """FLOPs of ``model(*inputs)`` in its Conv/Linear layers, float and quantized (2 per
    multiply-add: ``2 · output elements · weight elements per output channel``).

    Counted with forward hooks: ``FlopCounterMode`` decomposes some ops it has no formula
    for (e.g. nearest upsampling in an FPN) into float prims, which fails on quantized
    tensors.
    """
    total = 0

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        weight = module.weight() if callable(module.weight) else module.weight
        total += 2 * output.numel() * math.prod(weight.shape[1:])

    layers = [
        m
        for m in model.modules()
        if isinstance(m, WeightedQuantizedModule | nn.Conv2d | nn.Conv1d | nn.Conv3d | nn.Linear)
    ]
    handles = [m.register_forward_hook(count) for m in layers]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total

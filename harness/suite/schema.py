"""The suite format of DESIGN.md section 2 as typed pydantic models.

Validation raises ``SpecProblem`` (a ``ValueError``) inside validators; the loader turns
pydantic's errors into one-line ``SpecError``/``UnknownNameError`` messages that name
the file, the dotted field and a fix. Paths in ``model`` and ``data`` are resolved
against ``context["base_dir"]`` (the suite file's directory) and must exist.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from robustness_harness.compress.base import MethodInfo
from robustness_harness.data.labels import LabelKind
from robustness_harness.data.transform import ImageTransform
from robustness_harness.errors import HarnessError
from robustness_harness.inference.input_contract import NORMALIZATIONS, Contract
from robustness_harness.metrics.base import MetricInfo
from robustness_harness.registry import DATASETS, METHODS, METRICS, MODELS, Registry, did_you_mean
from robustness_harness.suite.problems import (
    NUMBER_HINT,
    Loc,
    SpecProblem,
    describe_input,
    problem_from_pydantic,
    unknown_key,
)
from robustness_harness.suite.thresholds import DECIDE_MODES, REDUCTIONS
from robustness_harness.train import adversarial_finetune, augment, samplers
from robustness_harness.train.finetune import RECIPE_DEFAULTS
from robustness_harness.user_code import as_model_entry

# --------------------------------------------------------------------------------------
# Features of the full format that this version rejects. Remove entries as they land.
# --------------------------------------------------------------------------------------
NOT_YET_KEYS: dict[str, dict[str, str]] = {
    "check": {
        "runs": "runs is not supported on a check: repeated runs belong to a variant "
        "(set runs: N under variants.<name>)",
    },
    "finetune": {},
}
"""Section → key → why it is rejected (hint: remove the key)."""

NOT_YET_VALUES: dict[tuple[str, str], dict[str, str]] = {}
"""(section, key) → planned value → why it is rejected."""

SAMPLERS = samplers.SAMPLERS
AUGMENTS = augment.AUGMENTS
DECISIONS = DECIDE_MODES
BASELINES = ("snapshot",)
STEP_KINDS = ("prune", "quantize")
THRESHOLD_KEYS = ("min", "max", "drop_max", "increase_max", "ratio_min", "ratio_max")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
_FRACTION = re.compile(r"^([^/]+)/([^/]+)$")


# --------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------
def parse_number(value: object) -> float:
    """A float from a YAML number or a string such as ``"1e-3"`` or ``"2/255"``.

    Booleans and NaN are rejected.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SpecProblem(f"expected a number, got {describe_input(value)}", hint=NUMBER_HINT)
    try:
        result = _parse_text(value) if isinstance(value, str) else float(value)
    except OverflowError:
        raise SpecProblem(f"number {value!r} is too large", hint=NUMBER_HINT) from None
    if math.isnan(result):
        raise SpecProblem("NaN is not a usable number", hint=NUMBER_HINT)
    return result


def _parse_text(text: str) -> float:
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        pass
    match = _FRACTION.match(stripped)
    if match:
        try:
            num, den = float(match[1]), float(match[2])
        except ValueError:
            pass
        else:
            if den == 0:
                raise SpecProblem(f"division by zero in {text!r}", hint=NUMBER_HINT)
            return num / den
    raise SpecProblem(f"expected a number, got {describe_input(text)}", hint=NUMBER_HINT)


Number = Annotated[float, BeforeValidator(parse_number)]
"""A float that also accepts ``"2/255"`` and ``"1e-3"`` strings; rejects booleans."""

Int = Annotated[int, Strict()]
"""An int that rejects booleans, floats and strings."""


# --------------------------------------------------------------------------------------
# Helpers shared by the models
# --------------------------------------------------------------------------------------
def check_keys(data: dict[Any, Any], allowed: Iterable[str], section: str) -> None:
    """Reject keys that are not implemented yet or unknown (with a did-you-mean)."""
    known = list(allowed)
    for key in data:
        reason = NOT_YET_KEYS.get(section, {}).get(key)
        if reason:
            raise SpecProblem(reason, hint="remove the key", loc=(key,))
        if key not in known:
            raise unknown_key(key, known)


def check_choice(section: str, key: str, value: object, implemented: tuple[str, ...]) -> object:
    """Accept an implemented value; explain planned and unknown ones."""
    if value in implemented:
        return value
    reason = NOT_YET_VALUES.get((section, key), {}).get(value)  # type: ignore[call-overload]
    if reason:
        raise SpecProblem(reason, hint="remove the key")
    close = did_you_mean(value, implemented) if isinstance(value, str) else ""
    raise SpecProblem(
        f"{key} {_quoted(value)} is not implemented; known: {', '.join(implemented)}",
        hint=f"{close}use {key}: {implemented[0]} or remove the key",
    )


def _quoted(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else describe_input(value)


def _lookup(registry: Registry[Any], name: str) -> Any:
    try:
        return registry.get(name)
    except HarnessError as err:
        raise SpecProblem.from_harness_error(err) from None


def _require_registered(registry: Registry[Any], name: str) -> str:
    """Check ``name`` without importing its entry point (models pull in torchvision)."""
    if name not in registry:
        _lookup(registry, name)
    return name


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _resolve_path(value: str, info: ValidationInfo, *, directory: bool) -> str:
    base = Path((info.context or {}).get("base_dir") or Path.cwd())
    path = Path(os.path.normpath(base / Path(value).expanduser()))
    where = f"relative paths are resolved against the suite file's directory {base}"
    if not path.exists():
        raise SpecProblem(f"{'directory' if directory else 'file'} not found: {path}", hint=where)
    if directory and not path.is_dir():
        raise SpecProblem(f"expected a directory, {path} is a file", hint=where)
    if not directory and not path.is_file():
        raise SpecProblem(f"expected a file, {path} is a directory", hint=where)
    return str(path)


class _Spec(BaseModel):
    """A suite section; with ``SECTION`` set, an unknown key is one problem naming it and
    the known keys (``check_keys``)."""

    model_config = ConfigDict(extra="forbid")
    SECTION: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if cls.SECTION is not None and isinstance(data, dict):
            check_keys(data, _field_names(cls), cls.SECTION)
        return data


# --------------------------------------------------------------------------------------
# model / data
# --------------------------------------------------------------------------------------
class NormalizeSpec(_Spec):
    """``normalize: {mean: [...], std: [...]}``: one value per input channel (3, or 1
    with ``grayscale``), std > 0."""

    mean: list[Number] = Field(min_length=1, max_length=3)
    std: list[Number] = Field(min_length=1, max_length=3)

    SECTION = "normalize"

    @field_validator("std")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        for i, std in enumerate(value):
            if not std > 0:
                raise SpecProblem(
                    f"std {std} is not positive (the input is divided by it)",
                    hint="give each channel's standard deviation, e.g. 0.229",
                    loc=(i,),
                )
        return value

    @model_validator(mode="after")
    def _same_length(self) -> NormalizeSpec:
        if len(self.mean) != len(self.std):
            raise SpecProblem(
                f"mean has {len(self.mean)} values but std has {len(self.std)}",
                hint="give one mean and one std per input channel",
                loc=("std",),
            )
        return self


class InputSpec(_Spec):
    """``model.input``: the conversion from [0, 1] RGB at data resolution that the model
    expects, done by a module in front of it (``robustness_harness.inference.input_contract``)."""

    normalize: str | NormalizeSpec | None = None
    grayscale: bool = False
    size: list[Int] | None = Field(None, min_length=2, max_length=2)

    SECTION = "input"

    @field_validator("normalize", mode="before")
    @classmethod
    def _normalize_mapping(cls, value: Any) -> Any:
        """A mapping is ``{mean, std}``, reported as such (not as 'expected a string')."""
        if not isinstance(value, dict):
            return value
        try:
            return NormalizeSpec.model_validate(value)
        except ValidationError as exc:
            raise problem_from_pydantic(exc.errors()[0]) from None

    @field_validator("normalize")
    @classmethod
    def _known_normalization(cls, value: str | NormalizeSpec | None) -> Any:
        if isinstance(value, str):
            check_choice("input", "normalize", value, tuple(NORMALIZATIONS))
        return value

    @field_validator("size")
    @classmethod
    def _positive_size(cls, value: list[int] | None) -> list[int] | None:
        for i, side in enumerate(value or ()):
            if side < 1:
                raise SpecProblem(
                    f"size {value} has a side {side} < 1",
                    hint="write size: [H, W] in pixels, e.g. [224, 224]",
                    loc=(i,),
                )
        return value

    @model_validator(mode="after")
    def _channels(self) -> InputSpec:
        mean, _ = self.mean_std
        channels = 1 if self.grayscale else 3
        if mean is not None and len(mean) != channels:
            raise SpecProblem(
                f"normalize has {len(mean)} channel(s) but the model receives {channels} "
                f"({'grayscale' if self.grayscale else 'RGB'})",
                hint=f"give {channels} mean and std value(s)"
                + (", e.g. {mean: [0.5], std: [0.5]}" if self.grayscale else ""),
                loc=("normalize",),
            )
        return self

    @property
    def mean_std(self) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
        """Per-channel (mean, std), or (None, None) without normalisation."""
        if self.normalize is None:
            return None, None
        if isinstance(self.normalize, str):
            return NORMALIZATIONS[self.normalize]
        return tuple(self.normalize.mean), tuple(self.normalize.std)

    def contract(self) -> Contract:
        """What ``InputContract`` does for this spec."""
        mean, std = self.mean_std
        size = (self.size[0], self.size[1]) if self.size is not None else None
        return Contract(mean=mean, std=std, grayscale=self.grayscale, size=size)


class ModelSpec(_Spec):
    """``name`` (a MODELS key) or ``factory`` (``"pkg.mod:fn"``), optional checkpoint.

    ``labels`` (detectors): ``index`` (label i in 1..K is the i-th category in id order)
    or ``category_id`` (labels are the data's COCO category ids).
    """

    name: str | None = None
    factory: str | None = None
    checkpoint: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    task: Literal["detection", "classification"] | None = None
    labels: LabelKind = "index"
    input: InputSpec | None = None

    SECTION = "model"

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str | None) -> str | None:
        return value if value is None else _require_registered(MODELS, value)

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, value: str | None) -> str | None:
        if value is not None and not _FACTORY.match(value):
            raise SpecProblem(
                f"factory {value!r} is not of the form 'package.module:function'",
                hint="write it like 'mypkg.models:build_detector'",
            )
        return value

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value is None else _resolve_path(value, info, directory=False)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if self.name is not None and self.factory is not None:
            raise SpecProblem(
                "give either 'name' or 'factory', not both", hint="remove one of the two keys"
            )
        if self.name is None and self.factory is None:
            raise SpecProblem(
                "the model needs 'name' (a registered model) or 'factory'",
                hint="add name: <model> or factory: 'pkg.mod:fn'",
            )
        if self.labels != "index" and self.resolved_task != "detection":
            raise SpecProblem(
                f"labels: {self.labels} is for detectors; a classifier's outputs are "
                "logits over the categories in id order",
                hint="remove the key",
                loc=("labels",),
            )
        if (
            self.input is not None
            and self.input.size is not None
            and self.resolved_task == "detection"
        ):
            raise SpecProblem(
                "input.size is not supported for detectors: boxes would be in the "
                "resized frame (torchvision detectors resize internally)",
                hint="remove size (normalize and grayscale work for detectors)",
                loc=("input", "size"),
            )
        if self.name is not None and self.task is not None and self.task != self.registered_task:
            raise SpecProblem(
                f"model '{self.name}' is a {self.registered_task} model, not {self.task}",
                hint="remove the key (registered models know their task)",
                loc=("task",),
            )
        return self

    @property
    def registered_task(self) -> str | None:
        """The task of a registered model (None for a factory)."""
        return None if self.name is None else as_model_entry(_lookup(MODELS, self.name)).task

    @property
    def resolved_task(self) -> str:
        """``detection`` or ``classification``: the registry's, the ``task`` key's, or
        detection for a factory without one."""
        return self.registered_task or self.task or "detection"


class CocoSource(_Spec):
    """User data in COCO format: an image directory and an annotation file."""

    images: str
    annotations: str

    SECTION = "coco"

    @field_validator("images")
    @classmethod
    def _images_dir(cls, value: str, info: ValidationInfo) -> str:
        return _resolve_path(value, info, directory=True)

    @field_validator("annotations")
    @classmethod
    def _annotations_file(cls, value: str, info: ValidationInfo) -> str:
        return _resolve_path(value, info, directory=False)


class TransformSpec(_Spec):
    """``data.transform: {resize: N, center_crop: N}`` on the decoded uint8 image, before
    corruptions (torchvision semantics, ``robustness_harness.data.transform``);
    classification data only (detection boxes are not transformed)."""

    resize: Int | None = Field(None, ge=1)
    center_crop: Int | None = Field(None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            check_keys(data, _field_names(cls), "transform")
            if not data:
                raise SpecProblem(
                    "the transform is empty", hint="add resize: 256 and/or center_crop: 224"
                )
        return data

    def image_transform(self) -> ImageTransform:
        """The transform that ``ClassificationData`` applies."""
        return ImageTransform(resize=self.resize, center_crop=self.center_crop)


class DataSpec(_Spec):
    """``name`` (a DATASETS key with ``split``/``params``) or ``coco`` (with ``train``).

    ``calibration: {images, annotations}`` (optional, either kind of data) holds the
    images that quantize steps (ptq_int8, int4_weight) calibrate on, the first
    ``calibration_images`` of them; without it they calibrate on the training set
    (``train``, or a registered dataset's train split). Only steps that train (finetune,
    ``schedule: agp``, slimming, hydra, ops_budget) need ``train``; a suite whose variants
    need data it lacks is rejected at load time.
    """

    name: str | None = None
    coco: CocoSource | None = None
    split: str = "val"
    train: CocoSource | None = None
    calibration: CocoSource | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    transform: TransformSpec | None = None

    @property
    def has_train(self) -> bool:
        """A training set exists: a registered dataset's train split, or ``train``."""
        return self.name is not None or self.train is not None

    SECTION = "data"

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str | None) -> str | None:
        return value if value is None else _require_registered(DATASETS, value)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.name is None) == (self.coco is None):
            raise SpecProblem(
                "give either 'name' or 'coco', not both"
                if self.name is not None
                else "the data needs 'name' (a registered dataset) or 'coco'",
                hint="use name: <dataset> or coco: {images: <dir>, annotations: <file.json>}",
            )
        registry_only = ("split", "params") if self.coco is not None else ()
        for key in registry_only:
            if key in self.model_fields_set:
                raise SpecProblem(
                    f"'{key}' applies to registered datasets, not to coco data",
                    hint="remove the key",
                    loc=(key,),
                )
        if self.name is not None and self.train is not None:
            raise SpecProblem(
                "'train' applies to coco data; registered datasets bring their training split",
                hint="remove the key",
                loc=("train",),
            )
        return self


# --------------------------------------------------------------------------------------
# variants
# --------------------------------------------------------------------------------------
def _is_float(annotation: Any) -> bool:
    if annotation is float:
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and args[0] is float
    return False


def validate_params(model: type[BaseModel], values: dict[str, Any], loc: Loc) -> BaseModel:
    """Validate method parameters with ``model``; unknown keys are errors even if it allows them.

    Float fields accept fractions (``2/255``) and reject booleans.
    """
    fields = {f.alias or n: f for n, f in model.model_fields.items()}
    known = ["method", *fields]
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise unknown_key(key, known, loc)
        if value is not None and _is_float(fields[key].annotation):
            try:
                value = parse_number(value)
            except SpecProblem as problem:
                raise problem.at((*loc, key)) from None
        cleaned[key] = value
    try:
        return model.model_validate(cleaned)
    except ValidationError as exc:
        raise problem_from_pydantic(exc.errors()[0]).at(loc) from None


def parse_step(data: Any) -> dict[str, Any]:
    """``{prune: {method: m, ...}}`` → ``{"kind", "method", "params"}`` (validated)."""
    if not isinstance(data, dict) or not data:
        raise SpecProblem(
            f"a compress step is a mapping with one key, prune or quantize; got "
            f"{describe_input(data)}",
            hint="write - prune: {method: <name>, ...}",
        )
    for key in data:
        if key not in STEP_KINDS:
            raise unknown_key(key, STEP_KINDS)
    if len(data) > 1:
        raise SpecProblem(
            "a compress step has exactly one key, prune or quantize; found both",
            hint="split it into two list entries: - prune: {...} and - quantize: {...}",
        )
    kind, body = next(iter(data.items()))
    if not isinstance(body, dict):
        raise SpecProblem(
            f"expected a mapping {{method: <name>, ...}}, got {describe_input(body)}",
            hint=f"write {kind}: {{method: <name>, ...}}",
            loc=(kind,),
        )
    method = body.get("method")
    if not isinstance(method, str):
        raise SpecProblem(
            f"'method' must name a {kind} method, got {describe_input(method)}",
            hint=f"add method: <name>; known methods: {', '.join(METHODS.names()) or 'none'}",
            loc=(kind, "method"),
        )
    try:
        info: MethodInfo = _lookup(METHODS, method)
    except SpecProblem as problem:
        raise problem.at((kind, "method")) from None
    if info.kind != kind:
        raise SpecProblem(
            f"method '{method}' is a {info.kind} method, not a {kind} method",
            hint=f"move it under '{info.kind}:'",
            loc=(kind, "method"),
        )
    rest = {k: v for k, v in body.items() if k not in ("method", "modules")}
    params = validate_params(info.params, rest, (kind,))
    return {"kind": kind, "method": method, "params": params, "modules": _modules(kind, body)}


def _modules(kind: str, body: dict[str, Any]) -> tuple[str, ...]:
    """``modules:`` of a step: qualified module names or fnmatch patterns."""
    value = body.get("modules", [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SpecProblem(
            f"modules must be a list of module names, got {describe_input(value)}",
            hint="write modules: [backbone, head.conv.*] (names from model.named_modules())",
            loc=(kind, "modules"),
        )
    return tuple(value)


class CompressStep(BaseModel):
    """One compression step: ``kind`` (prune/quantize), registered ``method``, ``params``.

    In YAML it is written ``{prune: {method: global_magnitude, sparsity: 0.8}}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["prune", "quantize"]
    method: str
    params: SerializeAsAny[BaseModel]
    modules: tuple[str, ...] = ()
    """Parts the step compresses (``robustness_harness.compress.targeting``); empty: all."""

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        """Without ``modules`` when empty: cache keys of whole-model steps stay as before."""
        data = handler(self)
        if isinstance(data, dict) and not data.get("modules"):
            data.pop("modules", None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: Any) -> Any:
        if isinstance(data, CompressStep):
            return data
        if isinstance(data, dict) and {"kind", "method", "params"} <= set(data) <= {
            "kind",
            "method",
            "params",
            "modules",
        }:
            return data  # constructed in Python, not read from YAML
        return parse_step(data)


class AdversarialSpec(_Spec):
    """``adversarial:`` of a fine-tune: train on FGSM (random init) or PGD batches.

    ``alpha``/``steps`` None take ``robustness_harness.train.adversarial_finetune``'s
    defaults (FGSM: 1.25 ε, one step; PGD: ε/4, 10 steps). A bare method name
    (``adversarial: fgsm``) is allowed.
    """

    method: Literal["fgsm", "pgd"]
    eps: Number = Field(2 / 255, gt=0, le=1)
    alpha: Number | None = Field(None, gt=0)
    steps: Int | None = Field(None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"method": data}
        if isinstance(data, dict):
            check_keys(data, _field_names(cls), "adversarial")
        return data

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: object) -> object:
        return check_choice(
            "adversarial", "method", value, adversarial_finetune.ADVERSARIAL_METHODS
        )

    @model_validator(mode="after")
    def _one_fgsm_step(self) -> AdversarialSpec:
        if self.method == "fgsm" and self.steps not in (None, 1):
            raise SpecProblem(
                f"fgsm takes one step, got steps: {self.steps}",
                hint="use method: pgd for several steps, or remove steps",
                loc=("steps",),
            )
        return self


class FinetuneSpec(_Spec):
    """Fine-tuning after compression; ``seed`` None means the variant's/suite's seed.
    The defaults are ``TrainRecipe``'s (``robustness_harness.train.finetune``), which the
    session builds from these fields by name (``recipe_from``).

    ``sampler`` (with ``rfs_threshold``, ``beta``, ``lam``) balances classes as in
    ``robustness_harness.train.samplers``; ``augment: naturalistic`` adds photometric augmentation;
    ``adversarial`` trains on adversarial batches.
    """

    epochs: Int = Field(RECIPE_DEFAULTS.epochs, ge=0)
    lr: Number = Field(RECIPE_DEFAULTS.lr, gt=0)
    batch_size: Int = Field(RECIPE_DEFAULTS.batch_size, ge=1)
    weight_decay: Number = Field(RECIPE_DEFAULTS.weight_decay, ge=0)
    seed: Int | None = Field(None, ge=0)
    sampler: str = RECIPE_DEFAULTS.sampler
    rfs_threshold: Number | None = RECIPE_DEFAULTS.rfs_threshold
    beta: Number | None = RECIPE_DEFAULTS.beta
    lam: Number = RECIPE_DEFAULTS.lam
    augment: str = RECIPE_DEFAULTS.augment
    adversarial: AdversarialSpec | None = None
    max_steps: Int | None = Field(RECIPE_DEFAULTS.max_steps, ge=1)

    SECTION = "finetune"

    @field_validator("sampler", mode="before")
    @classmethod
    def _sampler(cls, value: object) -> object:
        return check_choice("finetune", "sampler", value, SAMPLERS)

    @field_validator("augment", mode="before")
    @classmethod
    def _augment(cls, value: object) -> object:
        return check_choice("finetune", "augment", value, AUGMENTS)

    @model_validator(mode="after")
    def _sampler_settings(self) -> FinetuneSpec:
        problem = samplers.sampler_problem(self.sampler, self.rfs_threshold, self.beta, self.lam)
        if problem is not None:
            raise SpecProblem(problem.message, hint=problem.hint, loc=(problem.field,))
        return self


class VariantSpec(_Spec):
    """A compressed (or not) version of the model: steps in order, then fine-tuning.

    ``checkpoint`` starts the variant from other weights of the same architecture (a model
    compressed or retrained outside the harness) instead of the suite's base model.
    """

    checkpoint: str | None = None
    compress: list[CompressStep] = Field(default_factory=list)
    finetune: FinetuneSpec | None = None
    seed: Int | None = Field(None, ge=0)
    runs: Int = Field(1, ge=1, le=100)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, dict):
            check_keys(data, _field_names(cls), "variant")
        return data

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value is None else _resolve_path(value, info, directory=False)

    @property
    def changes_weights(self) -> bool:
        """True when the variant compresses or fine-tunes (it gets a checkpoint of its own)."""
        return bool(self.compress) or self.finetune is not None

    @model_validator(mode="after")
    def _repeatable(self) -> VariantSpec:
        if self.runs == 1:
            return self
        if not self.changes_weights:
            raise SpecProblem(
                f"runs: {self.runs} repeats compression and fine-tuning with other seeds, "
                "but this variant has neither",
                hint="remove runs (an unchanged model gives the same values every run)",
                loc=("runs",),
            )
        if self.finetune is not None and self.finetune.seed is not None:
            raise SpecProblem(
                f"finetune.seed fixes the fine-tuning seed, so the {self.runs} runs would "
                "not differ in fine-tuning",
                hint="remove finetune.seed (run r uses the variant's seed + r)",
                loc=("finetune", "seed"),
            )
        return self


# --------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------
def _lenient(annotation: Any) -> Any:
    """``float`` → ``Number``, ``int``/``bool`` → strict, recursively through unions."""
    if annotation is float:
        return Number
    if annotation is int:
        return Int
    if annotation is bool:
        return Annotated[bool, Strict()]
    origin = typing.get_origin(annotation)
    if origin is Annotated:  # constraints such as Field(ge=0) stay attached
        inner, *constraints = typing.get_args(annotation)
        return Annotated[(_lenient(inner), *constraints)]  # type: ignore[valid-type]
    if origin in (Union, types.UnionType):
        return Union[tuple(_lenient(a) for a in typing.get_args(annotation))]  # noqa: UP007
    if origin in (list, dict):
        return origin[tuple(_lenient(a) for a in typing.get_args(annotation))]
    return annotation


def _param_type(fn: Callable[..., Any], param: inspect.Parameter) -> Any:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable string annotations: fall back below
        hints = {}
    annotation = hints.get(param.name, param.annotation)
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        default = param.default
        known = (bool, int, float, str)
        annotation = type(default) if type(default) in known else Any
    return _lenient(annotation)


def validate_metric_params(info: MetricInfo, values: dict[str, Any]) -> dict[str, Any]:
    """Check the metric-specific keys of a check against the metric's keyword parameters."""
    params = info.params
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in params:
            raise unknown_key(key, [*GENERIC_CHECK_KEYS, *params])
        try:
            out[key] = TypeAdapter(_param_type(info.fn, params[key])).validate_python(value)
        except ValidationError as exc:
            raise problem_from_pydantic(exc.errors()[0]).at((key,)) from None
        except SpecProblem as problem:  # pragma: no cover - pydantic wraps ValueErrors
            raise problem.at((key,)) from None
    for name, param in params.items():
        if param.default is inspect.Parameter.empty and name not in out:
            raise SpecProblem(
                f"metric '{info.name}' needs the parameter '{name}'",
                hint=f"add {name}: <value>",
            )
    return out


class CheckSpec(_Spec):
    """One assertion: a metric, thresholds, and the metric's own parameters (``params``)."""

    metric: str
    min: Number | None = None
    max: Number | None = None
    drop_max: Number | None = None
    increase_max: Number | None = None
    ratio_min: Number | None = None
    ratio_max: Number | None = None
    reduce: Literal["worst", "worst_drop", "mean"] | None = None
    split: dict[str, Any] | None = None
    images: Int | None = Field(None, ge=1)
    corruptions: list[str] | None = None
    severities: list[Int] | None = None
    device: str | None = None
    # statistics (robustness_harness.stats): ``confidence`` alone is a paired bootstrap over images
    # (``resamples``, default 1000); with ``runs_test: paired_t`` it is a t-interval across
    # the variants' runs. ``decide`` judges that interval; ``anova`` is informational.
    confidence: Number | None = Field(None, gt=0, lt=1)
    resamples: Int | None = Field(None, ge=10, le=100_000)
    decide: Literal["point", "conservative", "lenient"] = "point"
    runs_test: Literal["paired_t"] | None = None
    anova: Annotated[bool, Strict()] = False
    baseline: Literal["snapshot"] | None = None
    tolerance: Number | None = Field(None, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _separate_params(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key in data:
            reason = NOT_YET_KEYS["check"].get(key)
            if reason:
                raise SpecProblem(reason, hint="remove the key", loc=(key,))
        name = data.get("metric")
        if not isinstance(name, str):
            return data  # pydantic reports the missing or mistyped metric
        try:
            info: MetricInfo = _lookup(METRICS, name)
        except SpecProblem as problem:
            raise problem.at(("metric",)) from None
        generic = {k: v for k, v in data.items() if k in GENERIC_CHECK_KEYS}
        extra = {k: v for k, v in data.items() if k not in GENERIC_CHECK_KEYS}
        if isinstance(extra.get("params"), dict) and "params" not in info.params:
            extra = {**extra.pop("params"), **extra}  # built in Python: params=...
        return {**generic, "params": validate_metric_params(info, extra)}

    @field_validator("decide", mode="before")
    @classmethod
    def _decide(cls, value: object) -> object:
        return check_choice("check", "decide", value, DECISIONS)

    @field_validator("baseline", mode="before")
    @classmethod
    def _baseline(cls, value: object) -> object:
        return None if value is None else check_choice("check", "baseline", value, BASELINES)

    @field_validator("corruptions", mode="before")
    @classmethod
    def _corruptions(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str | list) or not all(isinstance(v, str) for v in value):
            raise SpecProblem(
                f"corruptions must be a name or a list of names, got {describe_input(value)}",
                hint="write benchmark, all, a family (noise, blur, weather, digital, extra) "
                "or a list of corruption names",
            )
        from robustness_harness.perturb.corruptions import (
            resolve_corruptions,  # imports imagecorruptions
        )

        return resolve_corruptions(value)

    @field_validator("severities", mode="before")
    @classmethod
    def _severities(cls, value: object) -> object:
        if value is None:
            return None
        from robustness_harness.perturb.corruptions import check_severities

        return check_severities(value if isinstance(value, list) else [value])

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is not None and not _DEVICE.match(value):
            raise SpecProblem(
                f"device {value!r} is not one of cpu, cuda, cuda:N",
                hint="write device: cuda (the check skips when no GPU is present) or cpu",
            )
        return value

    @field_validator("split")
    @classmethod
    def _split(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if not value:
            raise SpecProblem(
                "the split filter is empty",
                hint="give an image attribute such as {timeofday: night}, or remove the key",
            )
        for key, item in value.items():
            if not isinstance(item, str | int | float | bool):
                raise SpecProblem(
                    f"a split value must be a string, number or boolean, got "
                    f"{describe_input(item)}",
                    hint="write attribute: value, e.g. timeofday: night",
                    loc=(key,),
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CheckSpec:
        self._check_snapshot()
        if all(getattr(self, key) is None for key in THRESHOLD_KEYS) and self.baseline is None:
            raise SpecProblem(
                "the check has no threshold, so it cannot fail",
                hint=f"add one of {', '.join(THRESHOLD_KEYS)}, e.g. drop_max: 0.02",
            )
        for low, high in (("min", "max"), ("ratio_min", "ratio_max")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise SpecProblem(
                    f"{low} {lo} is greater than {high} {hi}, so the check can never pass",
                    hint=f"make {low} <= {high}",
                    loc=(low,),
                )
        info = METRICS.get(self.metric)
        self._check_reduce(info)
        self._check_inputs(info)
        self._check_statistics()
        return self

    def _check_statistics(self) -> None:
        if self.decide != "point" and self.confidence is None:
            raise SpecProblem(
                f"decide: {self.decide} judges a confidence interval, but the check has no "
                "confidence level",
                hint="add confidence: 0.95, or remove decide",
                loc=("decide",),
            )
        if self.resamples is not None and not self.bootstrap:
            raise SpecProblem(
                "resamples sets the bootstrap over images, which runs only with confidence "
                "(and without runs_test)",
                hint="add confidence: 0.95, or remove resamples",
                loc=("resamples",),
            )
        if self.runs_test is not None and self.decide == "point":
            raise SpecProblem(
                f"runs_test: {self.runs_test} decides on the t-interval across runs, so it "
                "needs decide: conservative or lenient",
                hint="add confidence: 0.95 and decide: lenient (fail only if the whole "
                "interval violates) or conservative (pass only if it all satisfies)",
                loc=("runs_test",),
            )
        if self.bootstrap and self.corruptions is not None:
            raise SpecProblem(
                "confidence (a bootstrap over images) is not supported together with corruptions",
                hint="remove confidence, or gate the clean metric with confidence in another check",
                loc=("confidence",),
            )

    @property
    def bootstrap(self) -> bool:
        """The check's interval is a paired bootstrap over images (``confidence`` set
        and no ``runs_test``)."""
        return self.confidence is not None and self.runs_test is None

    def _check_inputs(self, info: MetricInfo) -> None:
        if info.inputs == "corruption_grid" and self.corruptions is None:
            raise SpecProblem(
                f"metric '{self.metric}' aggregates corrupted scores, so 'corruptions' is required",
                hint="add corruptions: benchmark (or all, a family, or a list of names)",
            )
        if self.severities is not None and self.corruptions is None:
            raise SpecProblem(
                "severities apply only together with corruptions",
                hint="add corruptions: benchmark, or remove the key",
                loc=("severities",),
            )
        if info.inputs == "model" and self.corruptions is not None:
            raise SpecProblem(
                f"metric '{self.metric}' measures the model itself and cannot be combined "
                "with corruptions",
                hint="remove the key, or gate a prediction metric (map, accuracy, ece) "
                "under corruptions",
                loc=("corruptions",),
            )
        relative = [k for k in ("drop_max", "increase_max", "ratio_min", "ratio_max")]
        used = [k for k in relative if getattr(self, k) is not None]
        if info.compares_with_baseline and used:
            raise SpecProblem(
                f"metric '{self.metric}' already compares the variant with the baseline, "
                f"so {used[0]} has nothing to compare",
                hint="use max (or min) instead",
                loc=(used[0],),
            )

    def _check_snapshot(self) -> None:
        if self.baseline == "snapshot" and self.tolerance is None:
            raise SpecProblem(
                "baseline: snapshot needs a tolerance (largest allowed change of the value)",
                hint="add tolerance: 0.01 (absolute, in the metric's units)",
                loc=("baseline",),
            )
        if self.tolerance is not None and self.baseline != "snapshot":
            raise SpecProblem(
                "tolerance applies only to a comparison with a snapshot",
                hint="add baseline: snapshot, or remove the key",
                loc=("tolerance",),
            )

    def _check_reduce(self, info: MetricInfo) -> None:
        if info.per_class and self.reduce is None:
            raise SpecProblem(
                f"metric '{self.metric}' gives one value per class, so 'reduce' is required",
                hint=f"add reduce: {' | '.join(REDUCTIONS)}",
            )
        if not info.per_class and self.reduce is not None:
            raise SpecProblem(
                f"metric '{self.metric}' gives one value, so 'reduce' does not apply",
                hint="remove the key",
                loc=("reduce",),
            )

    @property
    def has_absolute_threshold(self) -> bool:
        """``min`` or ``max`` is set: the value is judged on its own, not against a baseline."""
        return self.min is not None or self.max is not None


GENERIC_CHECK_KEYS: tuple[str, ...] = tuple(k for k in CheckSpec.model_fields if k != "params")


# --------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------
class EvalSpec(_Spec):
    """``eval:`` how predictions are made. ``batch_size``: images per inference batch
    (default None: 32 for detectors, 256 for classifiers); lower it when a large model
    runs out of GPU memory (32 images of 800×1088 hold about 15 GB). Predictions do not
    depend on it, so it is not part of their cache key."""

    batch_size: Int | None = Field(None, ge=1)

    SECTION = "eval"


# --------------------------------------------------------------------------------------
# suite
# --------------------------------------------------------------------------------------
def _check_names(data: dict[str, Any], section: str, what: str) -> None:
    entries = data.get(section)
    if not isinstance(entries, dict):
        return
    for name in entries:
        if not isinstance(name, str):
            raise SpecProblem(
                f"{what} name {name!r} is not text", hint=f"quote it: '{name}'", loc=(section,)
            )
        if not NAME_PATTERN.match(name):
            raise SpecProblem(
                f"invalid {what} name {_quoted(name)}",
                hint="use letters, digits and _ . + - starting with a letter or digit, "
                "e.g. structured-50",
                loc=(section, str(name)),
            )


def _metrics_for(task: str) -> list[str]:
    return [n for n in METRICS.names() if METRICS.get(n).supports(task)]


def _resamplable_metrics(task: str) -> list[str]:
    return [n for n in _metrics_for(task) if METRICS.get(n).resamplable(task)]


def _name_problem(name: str, known: Iterable[str], what: str, loc: Loc) -> SpecProblem:
    names = list(known)
    return SpecProblem(
        f"'{name}' is not a {what} of this suite",
        hint=f"{did_you_mean(name, names)}{what}s: {', '.join(names)}",
        loc=loc,
    )


class SuiteSpec(_Spec):
    """A whole suite file: the model, data, variants, checks and where checks apply."""

    suite: str = Field(min_length=1)
    description: str = ""
    model: ModelSpec
    data: DataSpec
    seed: Int = Field(0, ge=0)
    baseline: str
    variants: dict[str, VariantSpec] = Field(min_length=1)
    checks: dict[str, CheckSpec] = Field(min_length=1)
    apply: dict[str, list[str]] = Field(default_factory=dict)
    eval: EvalSpec = Field(default_factory=EvalSpec)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            check_keys(data, _field_names(cls), "suite")
            _check_names(data, "variants", "variant")
            _check_names(data, "checks", "check")
        return data

    @model_validator(mode="after")
    def _references(self) -> SuiteSpec:
        if self.baseline not in self.variants:
            raise _name_problem(self.baseline, self.variants, "variant", ("baseline",))
        task = self.model.resolved_task
        for name, check in self.checks.items():
            info = METRICS.get(check.metric)
            if not info.supports(task):
                raise SpecProblem(
                    f"metric '{check.metric}' is for {info.task} models, but this suite's "
                    f"model is a {task} model",
                    hint=self._task_hint(info.task, task),
                    loc=("checks", name, "metric"),
                )
            if check.bootstrap and not info.resamplable(task):
                raise SpecProblem(
                    f"metric '{check.metric}' cannot be recomputed on resampled images, so "
                    f"check '{name}' cannot use confidence (a bootstrap over images)",
                    hint=f"remove confidence; metrics that support it for {task} models: "
                    f"{', '.join(_resamplable_metrics(task)) or 'none'} (or set runs on the "
                    "variants and use runs_test: paired_t)",
                    loc=("checks", name, "confidence"),
                )
        for check, variants in self.apply.items():
            if check not in self.checks:
                raise _name_problem(check, self.checks, "check", ("apply", check))
            if not variants:
                raise SpecProblem(
                    "the list is empty, so the check would never run",
                    hint="name at least one variant, or remove the check from apply",
                    loc=("apply", check),
                )
            for i, variant in enumerate(variants):
                if variant not in self.variants:
                    raise _name_problem(variant, self.variants, "variant", ("apply", check, i))
        self._check_runs()
        self._check_training_data()
        if self.data.transform is not None and task == "detection":
            raise SpecProblem(
                "data.transform applies to classification data only: detection boxes "
                "would not match the resized or cropped image",
                hint="remove the transform (torchvision detectors resize internally)",
                loc=("data", "transform"),
            )
        return self

    def _task_hint(self, metric_task: str, task: str) -> str:
        """How to fix a metric of the other task: a factory without ``task:`` is taken as
        a detector, so the first fix is to declare the task."""
        metrics = f"use a {task} metric ({', '.join(_metrics_for(task))})"
        if self.model.factory is not None and self.model.task is None:
            return (
                f"set model.task: {metric_task} first (a factory without task: is taken "
                f"as a {task} model), or {metrics}"
            )
        return metrics

    def _check_training_data(self) -> None:
        """Every variant's fine-tune and training or calibrating steps have their data."""
        if self.data.has_train:
            return
        add_train = "add data.train: {images: DIR, annotations: FILE.json}"
        for name, variant in self.variants.items():
            if variant.finetune is not None and variant.finetune.epochs > 0:
                raise SpecProblem(
                    f"variant '{name}' fine-tunes on data.train, which this suite lacks",
                    hint=f"{add_train}, or remove finetune",
                    loc=("variants", name, "finetune"),
                )
            for i, step in enumerate(variant.compress):
                use = METHODS.get(step.method).data_use(step.params)
                if use == "train":
                    raise SpecProblem(
                        f"{step.method} trains on data.train, which this suite lacks",
                        hint=add_train,
                        loc=("variants", name, "compress", i, step.kind),
                    )
                if use == "calibration" and self.data.calibration is None:
                    raise SpecProblem(
                        f"{step.method} calibrates on data.train, which this suite lacks",
                        hint="add data.calibration: {images: DIR, annotations: FILE.json} "
                        "or data.train",
                        loc=("variants", name, "compress", i, step.kind),
                    )

    def _check_runs(self) -> None:
        """``runs_test`` and ``anova`` need repeated runs of every variant they gate."""
        for name, check in self.checks.items():
            key = "runs_test" if check.runs_test else "anova" if check.anova else None
            if key is None:
                continue
            gated = [v for v in self.variants if v != self.baseline and self.gates(v, name)]
            single = [v for v in gated if self.variants[v].runs < 2]
            if single or not gated:
                what = "a t-test across runs" if key == "runs_test" else "an ANOVA across variants"
                found = (
                    f"variant '{single[0]}' has runs {self.variants[single[0]].runs}"
                    if single
                    else "the check gates no variant besides the baseline"
                )
                target = f"variants.{single[0]}" if single else "the variants"
                raise SpecProblem(
                    f"{key} needs repeated runs for {what}, but {found}",
                    hint=f"set runs: 3 on {target}, or remove {key}",
                    loc=("checks", name, key),
                )

    def gates(self, variant: str, check: str) -> bool:
        """Whether the pair (variant, check) is a gate (see ``items``)."""
        spec = self.checks[check]
        if check in self.apply and variant not in self.apply[check]:
            return False
        if variant != self.baseline:
            return True
        if METRICS.get(spec.metric).compares_with_baseline:
            return False  # the baseline against itself
        return spec.has_absolute_threshold and spec.reduce != "worst_drop"

    def items(self) -> list[tuple[str, str]]:
        """The ``(variant, check)`` pairs to gate, variants then checks in file order.

        Every check gates every non-baseline variant (only the listed ones when the
        check is in ``apply``); the baseline is gated only by checks with ``min`` or
        ``max`` whose ``reduce`` is not ``worst_drop`` (and, if the check is in
        ``apply``, only when the baseline is listed there).
        """
        return [(v, c) for v in self.variants for c in self.checks if self.gates(v, c)]

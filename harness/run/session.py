"""HarnessSession: builds, caches and evaluates suite variants (no pytest here).

The pytest layer (``fixtures/``) holds one session per process and asks it for
check outcomes; Python users can do the same without pytest.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustness_harness.compress import finalize_pruning
from robustness_harness.compress.base import CompressContext
from robustness_harness.compress.prune import count_parameters
from robustness_harness.compress.quantize import (
    CHECKPOINT_FORMAT,
    fake_quant_twin,
    parameter_counts,
)
from robustness_harness.compress.targeting import FORWARD, apply_to_modules, task_forward
from robustness_harness.data.classification_sets import ClassificationData
from robustness_harness.data.coco import CocoDetectionData
from robustness_harness.data.decoded import DecodedImages
from robustness_harness.errors import HarnessError, ModelOutputError
from robustness_harness.inference.input_contract import inner_model, wrap
from robustness_harness.inference.predictions import Predictions, load_predictions
from robustness_harness.registry import DATASETS, METHODS, MODELS
from robustness_harness.run import measure
from robustness_harness.run.dry_run import dry_run_steps
from robustness_harness.run.outcome import CheckOutcome
from robustness_harness.run.tasks import TASKS, TaskOps
from robustness_harness.run.variants import (
    Variant,
    VariantRef,
    as_ref,
    quantize_split,
    suite_variant,
    variant_spec,
)
from robustness_harness.store.cache import Cache, cache_key, sha256_file
from robustness_harness.store.checkpoint import load_checkpoint, load_user_weights, save_checkpoint
from robustness_harness.store.sources import source_digest, source_roots
from robustness_harness.store.versions import stamps
from robustness_harness.suite import FinetuneSpec, ModelSpec, Suite, load_suite
from robustness_harness.suite.loader import canonical_json
from robustness_harness.train.finetune import recipe_from
from robustness_harness.user_code import (
    PretrainContext,
    as_model_entry,
    call_user,
    check_kwargs,
    import_factory,
    user_path,
)


@dataclass(frozen=True)
class HarnessOptions:
    """Run options (the pytest ``--harness-*`` flags map onto these)."""

    cache_dir: str | None = None
    device: str = "auto"
    seed: int | None = None
    limit: int | None = None
    rebuild: bool = False
    data_root: str | None = None
    regen: bool = False  # rewrite baseline snapshots instead of comparing with them


@dataclass(frozen=True)
class BuildRecord:
    """One checkpoint or prediction set built in this session."""

    kind: str
    suite: str
    variant: str
    key: str
    seconds: float
    summary: str


@dataclass
class _Loaded:
    model: nn.Module
    key: str
    meta: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """``auto`` → first CUDA device if present else CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError(
            f"device '{name}' requested but CUDA is not available",
            field="--harness-device",
            hint="use --harness-device cpu or auto",
        )
    return device


class HarnessSession:
    """Resolves suites into models, data, checkpoints, predictions and check outcomes."""

    def __init__(
        self, options: HarnessOptions | None = None, progress: Callable[[str], None] = print
    ) -> None:
        self.options = options or HarnessOptions()
        self.progress = progress
        self.cache = Cache.from_env(self.options.cache_dir)
        self.device = resolve_device(self.options.device)
        self.builds: list[BuildRecord] = []
        self._suites: dict[Path, Suite] = {}
        self._datasets: dict[tuple[Path, str], Any] = {}
        self._models: dict[str, _Loaded] = {}
        self._keys: dict[tuple[Path, Variant], str] = {}
        self._base_keys: dict[tuple[Path, str | None], str] = {}
        self._predictions: dict[str, Predictions] = {}
        self._sources: dict[Path, str] = {}
        self._rebuilt: set[str] = set()
        self._dry_runs: set[str] = set()
        self._unbuildable: dict[str, HarnessError] = {}
        self.decoded_images = DecodedImages()
        """Decoded image files of every dataset of the session (``HARNESS_IMAGE_MEMORY_MB``)."""
        self._float_models: dict[str, nn.Module] = {}
        self._twins: dict[str, nn.Module] = {}
        self.measured = measure.MeasureMemory()

    # -- suites and data -------------------------------------------------------------
    def suite(self, path: str | Path) -> Suite:
        """The parsed suite at ``path`` (memoized)."""
        key = Path(path).resolve()
        if key not in self._suites:
            self._suites[key] = load_suite(key)
        return self._suites[key]

    def seed(self, suite: Suite, variant: Variant | None = None) -> int:
        """The seed of ``variant`` (``--harness-seed`` overrides the suite's); run ``r``
        of a repeated variant (``VariantRef.run``) adds ``r``."""
        run = as_ref(variant).run if variant else 0
        if self.options.seed is not None:
            return self.options.seed + run
        v = suite.spec.variants.get(suite_variant(variant)) if variant else None
        return (v.seed if v is not None and v.seed is not None else suite.spec.seed) + run

    def task(self, suite: Suite) -> TaskOps:
        """The detection or classification operations for ``suite``'s model."""
        return TASKS[suite.spec.model.resolved_task]

    def dataset(self, suite: Suite, role: str = "eval") -> Any:
        """The evaluation (``role="eval"``), fine-tuning (``"train"``) or quantization
        calibration (``"calibration"``: ``data.calibration``, else the training set) data,
        limited by ``--harness-limit`` (``CocoDetectionData`` or ``ClassificationData``).
        Detection data are in the ``model.labels`` label space (training targets too)."""
        memo = (suite.path, role)
        if memo not in self._datasets:
            data = self._load_dataset(suite, role).limit(self.options.limit)
            if isinstance(data, CocoDetectionData):
                data = data.with_labels(suite.spec.model.labels)
            transform = suite.spec.data.transform
            if transform is not None and isinstance(data, ClassificationData):
                data = data.with_transform(transform.image_transform())
            if isinstance(data, CocoDetectionData | ClassificationData):
                data.keep_decoded_in(self.decoded_images)
            self._datasets[memo] = data
        return self._datasets[memo]

    def check_data(self, suite: Suite, check_name: str) -> Any:
        """A check's evaluation images: the suite's data, its ``split``, its ``images`` cap."""
        check = suite.spec.checks[check_name]
        data = self.dataset(suite)
        if check.split:
            data = data.select(check.split, field=f"checks.{check_name}.split", file=suite.path)
        return data.limit(check.images) if check.images else data

    def _load_dataset(self, suite: Suite, role: str) -> Any:
        data = suite.spec.data
        file = str(suite.path)
        ops = self.task(suite)
        if role == "calibration":
            if data.calibration is None:
                return self.dataset(suite, "train")
            return self._load_coco(suite, data.calibration)
        if data.name is not None:
            make = DATASETS.get(data.name, file=file, field="data.name")
            what = f"dataset '{data.name}'"
            check_kwargs(make, data.params, what=what, file=file, field="data.params")
            splits = make(self._data_root(), **data.params)
            split = data.split if role == "eval" else "train"
            if split not in splits:
                raise HarnessError(
                    f"dataset '{data.name}' has no split '{split}'",
                    file=file,
                    field="data.split",
                    hint=f"use one of: {', '.join(sorted(splits))}",
                )
            if not isinstance(splits[split], ops.data_type):
                raise HarnessError(
                    f"dataset '{data.name}' holds {splits[split].task} data, but the model "
                    f"is a {ops.name} model",
                    file=file,
                    field="data.name",
                    hint=f"use a {ops.name} dataset, or a {splits[split].task} model",
                )
            return splits[split]
        source = data.coco if role == "eval" else data.train
        if source is None:
            raise HarnessError(
                "this suite trains a variant but its data has no training set",
                file=file,
                field="data.train",
                hint="add data.train: {images: DIR, annotations: FILE.json}",
            )
        return self._load_coco(suite, source)

    def _load_coco(self, suite: Suite, source: Any) -> Any:
        """The task's data from a ``{images, annotations}`` source of the suite."""
        return self.task(suite).load_data(
            user_path(source.images, suite.path), user_path(source.annotations, suite.path)
        )

    def _example_role(self, suite: Suite) -> str:
        """The data compression steps trace and score on (``ctx.example_inputs``): the
        training set, else the calibration set, else the evaluation data."""
        data = suite.spec.data
        if data.has_train:
            return "train"
        return "calibration" if data.calibration is not None else "eval"

    def _data_root(self) -> Path:
        root = self.options.data_root
        return Path(root) if root else self.cache.root / "data"

    # -- models and checkpoints -----------------------------------------------------
    def _builder(self, suite: Suite) -> tuple[Callable[[], nn.Module], Any]:
        """A zero-argument builder of the suite's (untrained) architecture, and its entry."""
        spec = suite.spec.model
        file = str(suite.path)
        if spec.name is not None:
            entry = as_model_entry(MODELS.get(spec.name, file=file, field="model.name"))
            fn, field_name, what = entry.build, "model.name", f"model '{spec.name}'"
        else:
            entry = None
            fn = import_factory(spec.factory, file=file)
            field_name, what = "model.factory", f"factory '{spec.factory}'"
        kwargs = dict(spec.kwargs)
        if "num_classes" in inspect.signature(fn).parameters and "num_classes" not in kwargs:
            kwargs["num_classes"] = _num_classes(self.dataset(suite))

        def build() -> nn.Module:
            model = call_user(fn, what=what, file=file, field=field_name, **kwargs)
            if not isinstance(model, nn.Module):
                raise HarnessError(
                    f"{what} returned {type(model).__name__}, not a torch.nn.Module",
                    file=file,
                    field=field_name,
                    hint="return the model instance",
                )
            if spec.input is not None:  # the user's weights load into .model (_start)
                return wrap(model, spec.input.contract(), spec.resolved_task)
            return model

        return build, entry

    def _base(self, suite: Suite) -> _Loaded:
        """The suite's trained base model (user checkpoint or embedded weights)."""
        return self._start(suite, None)

    def _start(self, suite: Suite, variant: Variant | None) -> _Loaded:
        """The weights ``variant`` starts from: its own ``checkpoint``, else the base model.

        Weights are resolved and hashed once per suite; the model is reloaded only if
        it was evicted from memory.
        """
        source = variant_spec(suite, variant).checkpoint if variant is not None else None
        memo = (suite.path, source)
        known = self._base_keys.get(memo)
        if known is not None and known in self._models:
            return self._models[known]
        build, entry = self._builder(suite)
        spec = suite.spec.model
        if source is not None:
            weights = user_path(source, suite.path)
        elif spec.checkpoint is not None:
            weights = user_path(spec.checkpoint, suite.path)
        elif entry is not None and entry.pretrained is not None:
            weights = entry.pretrained(self._pretrain_context(suite))
        else:
            raise HarnessError(
                "the model has no trained weights",
                file=str(suite.path),
                field="model.checkpoint",
                hint="set model.checkpoint to a .safetensors or .pt state dict",
            )
        source = self.model_source(suite)
        key = cache_key("base", model_identity(spec), source, sha256_file(weights), stamps())
        self._base_keys[memo] = key
        if key not in self._models:
            model = build()
            load_user_weights(inner_model(model), weights)
            self._models[key] = _Loaded(model.eval(), key, {"weights": str(weights)})
        return self._models[key]

    def model_source(self, suite: Suite) -> dict[str, str]:
        """Digest of the Python source that builds the suite's model, by source root: the
        factory's top-level package (or module file), or the package of a registered
        model's builder. Each root is read once per session."""
        spec = suite.spec.model
        file = str(suite.path)
        if spec.factory is not None:
            fn = import_factory(spec.factory, file=file)
        else:
            fn = as_model_entry(MODELS.get(spec.name, file=file, field="model.name")).build
        module = getattr(fn, "__module__", None) or type(fn).__module__
        digests = {}
        for root in source_roots(module):
            if root not in self._sources:
                self._sources[root] = source_digest(root)
            digests[root.name] = self._sources[root]
        return digests

    def _pretrain_context(self, suite: Suite) -> PretrainContext:
        data = suite.spec.data
        return PretrainContext(
            cache=self.cache,
            data_name=data.name,
            data_params=dict(data.params),
            train_data=lambda: self.dataset(suite, "train"),
            device=str(self.device),
            progress=self.progress,
            model_kwargs=dict(suite.spec.model.kwargs),
        )

    def checkpoint_key(self, suite: Suite, variant: Variant) -> str:
        """Content address of ``variant``'s checkpoint (the base key when unchanged)."""
        memo = (suite.path, variant)
        if memo not in self._keys:
            start = self._start(suite, variant).key
            v = variant_spec(suite, variant)
            if not v.changes_weights:
                self._keys[memo] = start
            else:
                self._keys[memo] = cache_key(
                    "variant",
                    start,
                    [canonical_json(step) for step in v.compress],
                    canonical_json(v.finetune) if v.finetune else None,
                    self.seed(suite, variant),
                    self.dataset(suite, "train").fingerprint
                    if self.trains(suite, variant)
                    else None,
                    self._compress_inputs(suite, variant),
                    stamps(),
                )
        return self._keys[memo]

    def start_model(self, suite: Suite, variant: Variant | None) -> nn.Module:
        """The trained model ``variant`` starts from (None: the suite's base model):
        factory imported, weights loaded into the architecture."""
        return self._start(suite, variant).model

    def example_batch(self, suite: Suite) -> torch.Tensor:
        """The example inputs compression steps trace on (a float batch in [0, 1])."""
        return _example_batch(self.dataset(suite, self._example_role(suite)))

    def trains(self, suite: Suite, variant: Variant) -> bool:
        """Whether building ``variant`` runs training steps on the training set (a
        fine-tune with epochs, or a step that trains such as ``schedule: agp``)."""
        v = variant_spec(suite, variant)
        if v.finetune is not None and v.finetune.epochs > 0:
            return True
        return any(_data_use(step) == "train" for step in v.compress)

    def _compress_inputs(self, suite: Suite, variant: Variant) -> dict[str, Any]:
        """Which images the compress steps see, for the checkpoint key: the example
        inputs and each quantize step's calibration images (their ids and the
        fingerprint of that selection)."""
        steps = variant_spec(suite, variant).compress
        if not steps:
            return {}
        role = self._example_role(suite)
        used = {"example": _selection(role, self.dataset(suite, role), EXAMPLE_IMAGES)}
        for i, step in enumerate(steps):
            if _data_use(step) == "calibration":
                data = self.dataset(suite, "calibration")
                used[f"calibration[{i}]"] = _selection(
                    "calibration", data, step.params.calibration_images
                )
                used["quantized_format"] = CHECKPOINT_FORMAT
        return used

    def model(self, suite: Suite, variant: Variant) -> nn.Module:
        """``variant``'s model, built on first use and cached on disk."""
        key = self.checkpoint_key(suite, variant)
        if key in self._models:
            return self._models[key].model
        if not variant_spec(suite, variant).changes_weights:
            return self._start(suite, variant).model
        if key in self._unbuildable:  # one build attempt per session, not one per check
            raise self._unbuildable[key]
        build, _ = self._builder(suite)
        try:
            entry, built = self.cache.get_or_build(
                "ckpt",
                key,
                lambda tmp: self._build_checked(suite, variant, tmp),
                rebuild=self.take_rebuild(key),
            )
        except HarnessError as err:
            self._unbuildable[key] = err
            raise
        model = load_checkpoint(build, entry.path)
        base_key = self._base(suite).key
        self._models = {k: v for k, v in self._models.items() if k == base_key}
        self._models[key] = _Loaded(model.eval(), key, {**entry.meta, "dir": entry.path})
        if not built:
            self.progress(f"reused checkpoint {suite.spec.suite}/{variant} [{key[:10]}]")
        return model

    def dry_run(self, suite: Suite, variant: Variant) -> None:
        """``variant``'s compression steps on a copy of its start model, without training
        (``robustness_harness.run.dry_run``): an unsupported (architecture × method) pair is
        one ``HarnessError`` in seconds. Once per variant and session."""
        key = self.checkpoint_key(suite, variant)
        if key in self._dry_runs:
            return
        source = self.float_variant(suite, variant)  # first: a misplaced quantize step
        dry_run_steps(
            self._start(suite, variant).model,
            variant_spec(suite, variant).compress,
            self.example_batch(suite),
            seed=self.seed(suite, variant),
            task=self.task(suite).name,
            suite_path=suite.path,
            variant=suite_variant(variant),
        )
        self._dry_runs.add(key)
        if source is not None:  # its steps were just run, before the quantize step
            self._dry_runs.add(self.checkpoint_key(suite, source))

    def _build_checked(self, suite: Suite, variant: Variant, out_dir: Path) -> dict[str, Any]:
        self.dry_run(suite, variant)
        return self._build_variant(suite, variant, out_dir)

    def take_rebuild(self, key: str) -> bool:
        if not self.options.rebuild or key in self._rebuilt:
            return False
        self._rebuilt.add(key)
        return True

    def _build_variant(self, suite: Suite, variant: Variant, out_dir: Path) -> dict[str, Any]:
        v = variant_spec(suite, variant)
        source = self.float_model(suite, variant)
        if source is not None:  # post-training quantization of the cached float model
            quantize_steps = quantize_split(suite, variant)[1]
            v = v.model_copy(update={"compress": quantize_steps, "finetune": None})
        seed = self.seed(suite, variant)
        start = time.perf_counter()
        base = self._base(suite).model
        model = copy.deepcopy(self._start(suite, variant).model if source is None else source)
        total_before, _ = count_parameters(base)
        trains = self.trains(suite, variant)
        train = self.dataset(suite, "train") if trains else None
        steps_text = []
        example = self.example_batch(suite)
        ctx = CompressContext(
            example_inputs=example,
            seed=seed,
            progress=lambda line: self.progress(f"  {variant}: {line}"),
            train=self._train_steps(suite, variant, train) if trains else None,
            extras={
                "calibration_images": lambda n: _example_batch(
                    self.dataset(suite, "calibration"), n
                ),
                FORWARD: task_forward(self.task(suite).name),
            },
        )
        for i, step in enumerate(v.compress):
            field_name = f"variants.{suite_variant(variant)}"
            info = METHODS.get(step.method, file=str(suite.path), field=field_name)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + i)
                model = apply_to_modules(info, model, step.params, ctx, step.modules)
            steps_text.append(f"{step.kind} {step.method} {_step_args(step.params)}")
        if v.finetune is not None and v.finetune.epochs > 0 and train is not None:
            recipe = recipe_from(v.finetune, seed)
            self.progress(
                f"  {variant}: fine-tuning {recipe.epochs} epoch(s) on {len(train)} images"
            )
            self.task(suite).train(model, train, recipe, self.device, ctx.progress)
            steps_text.append(f"finetune {recipe.epochs} ep")
        model = finalize_pruning(model).cpu().eval()
        total, nonzero, sparsity = parameter_counts(model)
        meta = {
            "suite": suite.spec.suite,
            "variant": str(variant),
            "seed": seed,
            "steps": steps_text,
            "params": total,
            "nonzero_params": nonzero,
            "params_ratio": total / total_before,
            "sparsity": sparsity,
            "build_seconds": round(time.perf_counter() - start, 2),
            "stamps": stamps(),
        }
        save_checkpoint(model, out_dir, meta=weights_meta(meta))
        summary = (
            f"built checkpoint {suite.spec.suite}/{variant} ({' → '.join(steps_text) or 'copy'}) "
            f"in {meta['build_seconds']:.1f}s · params {meta['params_ratio']:.2f}× · "
            f"sparsity {meta['sparsity']:.2f}"
        )
        self.progress(summary)
        self.builds.append(
            BuildRecord("ckpt", suite.spec.suite, str(variant), "", meta["build_seconds"], summary)
        )
        return meta

    def _train_steps(self, suite: Suite, variant: Variant, train: Any) -> Callable[..., None]:
        """``train(model, steps, regularizer=None, **overrides)`` for schedules that
        interleave pruning and training: the variant's fine-tune recipe (defaults without
        one; ``overrides`` replace ``TrainRecipe`` fields such as ``lr``), ``steps``
        optimizer steps, a new seed per burst."""
        v = variant_spec(suite, variant)
        base = recipe_from(v.finetune or FinetuneSpec(), self.seed(suite, variant))
        bursts = [0]

        def train_steps(
            model: nn.Module, steps: int, regularizer: Any = None, **overrides: Any
        ) -> None:
            epochs = -(-steps * base.batch_size // max(1, len(train)))  # ceil
            recipe = dataclasses.replace(
                base,
                epochs=max(1, epochs),
                max_steps=steps,
                seed=base.seed + 1000 + bursts[0],
                **overrides,
            )
            bursts[0] += 1
            self.task(suite).train(
                model, train, recipe, self.device, lambda _line: None, regularizer=regularizer
            )

        return train_steps

    # -- quantized variants -----------------------------------------------------------
    def float_variant(self, suite: Suite, variant: Variant) -> VariantRef | None:
        """``variant`` without its quantize step, as a derived variant (same seed and
        fine-tune); None when ``variant`` is not quantized.

        Its checkpoint key does not depend on the ref, so it shares the cache entry of
        any variant with the same steps (e.g. the pruned variant of ``[prune, quantize]``).
        """
        _, quantize_steps = quantize_split(suite, variant)
        if not quantize_steps:
            return None
        return dataclasses.replace(as_ref(variant), float_source=True)

    def float_model(self, suite: Suite, variant: Variant) -> nn.Module | None:
        """The float model a quantized ``variant`` is quantized from (after its fine-tune),
        built and cached like any checkpoint. None for a float variant."""
        source = self.float_variant(suite, variant)
        if source is None:
            return None
        key = self.checkpoint_key(suite, source)
        if key not in self._float_models:
            self._float_models[key] = self.model(suite, source)
        return self._float_models[key]

    def twin(self, suite: Suite, variant: Variant) -> nn.Module | None:
        """The fake-quant twin of a quantized ``variant`` (``fake_quant_twin``), which
        gradient attacks and saliency differentiate: rebuilt from the cached float and
        quantized checkpoints, kept for the session. None for a float variant."""
        source = self.float_model(suite, variant)
        if source is None:
            return None
        key = self.checkpoint_key(suite, variant)
        if key not in self._twins:
            self._twins[key] = fake_quant_twin(source, self.model(suite, variant))
        return self._twins[key]

    # -- predictions and checks -------------------------------------------------------
    def loaded(self, suite: Suite, variant: Variant) -> _Loaded:
        """``variant``'s model with its cache key and checkpoint metadata."""
        self.model(suite, variant)
        return self._models[self.checkpoint_key(suite, variant)]

    def eval_seed(self, suite: Suite) -> int:
        """The seed of evaluation randomness (corrupted images, attack starts): the
        suite's, so every variant sees the same inputs."""
        return self.options.seed if self.options.seed is not None else suite.spec.seed

    def prediction_key(
        self, suite: Suite, variant: Variant, data: Any, corruption: tuple[str, int] | None = None
    ) -> str:
        """Cache key of ``variant``'s predictions on ``data`` (clean or corrupted)."""
        parts: list[Any] = [self.checkpoint_key(suite, variant), data.fingerprint]
        if corruption is not None:  # the fingerprint already covers the image set
            parts += [list(corruption), self.eval_seed(suite)]
        return cache_key("pred", *parts, self.device.type)

    def cached_predictions(self, key: str) -> Predictions | None:
        """Predictions already in memory or on disk under ``key`` (None otherwise)."""
        if key in self._predictions:
            return self._predictions[key]
        if self.options.rebuild and key not in self._rebuilt:
            return None
        entry = self.cache.get("pred", key)
        return None if entry is None else self._remember(key, entry.file("predictions.safetensors"))

    def _remember(self, key: str, path: Path) -> Predictions:
        preds = load_predictions(path)
        self._predictions[key] = preds
        return preds

    def predictions(
        self,
        suite: Suite,
        variant: Variant,
        *,
        data: Any = None,
        corruption: tuple[str, int] | None = None,
        images: Mapping[int, Any] | None = None,
    ) -> Predictions:
        """``variant``'s predictions (cached on disk): on the evaluation data by default,
        or on ``data``; with ``corruption`` = (name, severity), ``images`` holds the
        corrupted uint8 images by image id (needed only when they are not cached)."""
        data = self.dataset(suite) if data is None else data
        key = self.prediction_key(suite, variant, data, corruption)
        if key in self._predictions:
            return self._predictions[key]
        ops = self.task(suite)
        size = suite.spec.eval.batch_size
        batching = {} if size is None else {"batch_size": size}
        what = f"{suite.spec.suite}/{variant}" + (
            f" under {corruption[0]}@{corruption[1]}" if corruption else ""
        )

        def build(tmp: Path) -> dict[str, Any]:
            start = time.perf_counter()
            load = None
            if corruption is not None:
                if images is None:
                    raise ValueError(f"predictions under {corruption} need the corrupted images")
                load = images.__getitem__
            model = self.model(suite, variant)
            try:
                preds = ops.predict(model, data, device=self.device, load=load, **batching)
            except ModelOutputError as err:
                raise err.with_context(file=suite.path) from None
            preds.save(tmp / "predictions.safetensors")
            seconds = time.perf_counter() - start
            summary = f"predicted {what} on {len(data)} images in {seconds:.1f}s"
            if corruption is None:
                self.progress(summary)
            self.builds.append(
                BuildRecord("pred", suite.spec.suite, str(variant), key, seconds, summary)
            )
            return {"images": len(data), "seconds": round(seconds, 2), "task": ops.name}

        entry, _ = self.cache.get_or_build("pred", key, build, rebuild=self.take_rebuild(key))
        return self._remember(key, entry.file("predictions.safetensors"))

    def predictions_on(self, suite: Suite, variant: Variant, data: Any) -> Predictions:
        """``variant``'s clean predictions on ``data``, a selection of the evaluation data
        (a check's ``split``/``images``): taken from the whole split's when those are
        cached, else predicted on the selection only (keyed by its fingerprint)."""
        full = self.dataset(suite)
        if data.fingerprint != full.fingerprint:
            whole = self.cached_predictions(self.prediction_key(suite, variant, full))
            if whole is None:
                return self.predictions(suite, variant, data=data)
            return whole.subset(data.image_ids)
        return self.predictions(suite, variant).subset(data.image_ids)

    def run_check(self, suite: Suite, variant: Variant, check_name: str) -> CheckOutcome:
        """Evaluate one gate: candidate and baseline values, reduction and decision
        (``measure.run_check``)."""
        return measure.run_check(self, suite, variant, check_name)


def model_identity(spec: ModelSpec) -> dict[str, Any]:
    """What of the model spec its weights and predictions depend on (a cache-key part):
    name or factory, kwargs, and ``labels``, ``input`` and ``task`` when set (so keys
    made before those fields existed still hold)."""
    identity = spec.model_dump(mode="json", include={"name", "factory", "kwargs"})
    if spec.labels != "index":
        identity["labels"] = spec.labels
    if spec.input is not None:
        identity["input"] = spec.input.model_dump(mode="json")
    if spec.task is not None:  # a factory's outputs are read as this task's
        identity["task"] = spec.resolved_task
    return identity


def _num_classes(data: Any) -> int:
    """The ``num_classes`` a factory gets: a detector's label space (background
    included, see ``LabelSpace.num_classes``), else the number of categories."""
    if isinstance(data, CocoDetectionData):
        return data.label_space.num_classes
    return len(data.categories)


EXAMPLE_IMAGES = 4
"""Images in ``CompressContext.example_inputs``."""


def _candidate_ids(data: Any, n: int) -> list[int]:
    """The images ``_example_batch(data, n)`` chooses from: the first ``4 n``."""
    return list(data.image_ids[: 4 * n])


def _example_batch(data: Any, n: int = EXAMPLE_IMAGES) -> torch.Tensor:
    """Up to ``n`` of ``data``'s first images of the first image's size, as a float
    batch in [0, 1] (example inputs, calibration images)."""
    images = [
        torch.from_numpy(data.load_image(i)).permute(2, 0, 1).float().div(255)
        for i in _candidate_ids(data, n)
    ]
    same = [im for im in images if im.shape == images[0].shape][:n]
    return torch.stack(same)


def _selection(role: str, data: Any, n: int) -> dict[str, Any]:
    """Cache-key part naming the images ``_example_batch(data, n)`` reads: the role of
    the set, their ids and the fingerprint of those images."""
    ids = _candidate_ids(data, n)
    return {"role": role, "ids": ids, "fingerprint": data.subset(ids).fingerprint}


def _data_use(step: Any) -> str | None:
    """The data a compress step reads besides example inputs (see ``MethodInfo.data_use``)."""
    return METHODS.get(step.method).data_use(step.params)


TIMING_META = ("build_seconds",)
"""Build metadata that varies from build to build of the same checkpoint."""


def weights_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The build metadata stored in the weights file's header: all but the timings, so
    that one build's file has the same bytes as the next (``size`` with ``measure:
    bytes`` reads them); ``meta.json`` of the cache entry keeps the timings."""
    return {k: v for k, v in meta.items() if k not in TIMING_META}


def _step_args(params: Any) -> str:
    values = params.model_dump() if hasattr(params, "model_dump") else dict(params)
    return " ".join(f"{k}={v}" for k, v in values.items())

"""Every suite field either reaches the cache key of what it changes, or is listed as
changing no artifact (DESIGN.md section 5).

A new field fails ``test_every_spec_field_is_keyed_or_explained`` until it is added to
``FIELDS`` (keyed, saying where) or ``WHOLE`` (a model dumped whole into a key).
"""

from __future__ import annotations

import typing

from pydantic import BaseModel

from robustness_harness.compress import METHODS
from robustness_harness.suite.schema import SuiteSpec

KEYED = "keyed: "
NO_ARTIFACT = "no artifact: "

FIELDS: dict[str, dict[str, str]] = {
    "SuiteSpec": {
        "suite": NO_ARTIFACT + "a name shown in reports",
        "description": NO_ARTIFACT + "text shown in reports",
        "model": KEYED + "section, see ModelSpec",
        "data": KEYED + "section, see DataSpec",
        "seed": KEYED + "variant seed in checkpoint_key; eval_seed in corrupted prediction "
        "and model-metric value keys",
        "baseline": NO_ARTIFACT + "which variant values are compared with",
        "variants": KEYED + "section, see VariantSpec",
        "checks": KEYED + "section, see CheckSpec",
        "apply": NO_ARTIFACT + "which (variant, check) pairs are gated",
        "eval": KEYED + "section, see EvalSpec",
    },
    "ModelSpec": {
        "name": KEYED + "model_identity in the base key; the entry's package source",
        "factory": KEYED + "model_identity in the base key; its package source (model_source)",
        "checkpoint": KEYED + "sha256 of the weights file in the base key",
        "kwargs": KEYED + "model_identity in the base key",
        "task": KEYED + "model_identity in the base key (when set)",
        "labels": KEYED + "model_identity in the base key (when not index)",
        "input": KEYED + "model_identity in the base key (InputSpec dumped whole)",
    },
    "CocoSource": {
        "images": KEYED + "data fingerprint (file names and sizes)",
        "annotations": KEYED + "data fingerprint (canonical COCO json)",
    },
    "DataSpec": {
        "name": KEYED + "data fingerprint of the generated/registered split",
        "coco": KEYED + "data fingerprint of the evaluation data (prediction keys)",
        "split": KEYED + "data fingerprint (other images)",
        "train": KEYED + "training-set fingerprint in checkpoint_key when a variant trains; "
        "example-input selection",
        "calibration": KEYED + "calibration selection (ids + fingerprint) in checkpoint_key",
        "params": KEYED + "data fingerprint of the generated data",
        "transform": KEYED + "ClassificationData.fingerprint includes the transform",
    },
    "EvalSpec": {
        "batch_size": NO_ARTIFACT + "predictions do not depend on it "
        "(test_check_images.py::test_batch_size_does_not_change_predictions)",
    },
    "VariantSpec": {
        "checkpoint": KEYED + "sha256 of the start weights (_start)",
        "compress": KEYED + "canonical_json of every step in checkpoint_key",
        "finetune": KEYED + "canonical_json of the fine-tune in checkpoint_key",
        "seed": KEYED + "session.seed in checkpoint_key",
        "runs": KEYED + "run r is a derived variant seeded seed + r (its own key)",
    },
    "CheckSpec": {
        "metric": KEYED + "metric name in model-metric value and corruption grid keys",
        **{
            key: NO_ARTIFACT + "a threshold, applied to computed values"
            for key in ("min", "max", "drop_max", "increase_max", "ratio_min", "ratio_max")
        },
        "reduce": NO_ARTIFACT + "applied to computed per-class values",
        "split": KEYED + "fingerprint of the check's images (prediction and value keys)",
        "images": KEYED + "fingerprint of the check's images (prediction and value keys)",
        "corruptions": KEYED + "(corruption, severity) in the prediction key",
        "severities": KEYED + "(corruption, severity) in the prediction key",
        "device": KEYED + "device type in the model-metric value key",
        "confidence": NO_ARTIFACT + "statistics computed from cached predictions, not cached",
        "resamples": NO_ARTIFACT + "statistics computed from cached predictions, not cached",
        "decide": NO_ARTIFACT + "how an interval is judged",
        "runs_test": NO_ARTIFACT + "statistics over runs, not cached",
        "anova": NO_ARTIFACT + "informational statistics, not cached",
        "baseline": NO_ARTIFACT + "compares with a snapshot file, not a cache entry",
        "tolerance": NO_ARTIFACT + "a threshold against the snapshot",
        "params": KEYED + "canonical_json(check.params) in the model-metric value key",
    },
}
"""Model → field → where it is keyed, or why it changes no artifact."""

WHOLE: dict[str, str] = {
    "CompressStep": "canonical_json(step) in checkpoint_key",
    "FinetuneSpec": "canonical_json(finetune) in checkpoint_key",
    "AdversarialSpec": "inside FinetuneSpec",
    "InputSpec": "model_identity dumps model.input whole",
    "NormalizeSpec": "inside InputSpec",
    "TransformSpec": "ImageTransform.describe() in the data fingerprint",
    **{
        METHODS.get(name).params.__name__: "inside CompressStep (canonical_json)"
        for name in METHODS.names()
    },
}
"""Models dumped whole into a key: every field of theirs is keyed."""


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models mentioned anywhere in a field annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation] if annotation is not BaseModel else []
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def spec_models() -> dict[str, type[BaseModel]]:
    """Every model reachable from ``SuiteSpec`` plus every compression method's params."""
    found: dict[str, type[BaseModel]] = {}
    todo: list[type[BaseModel]] = [SuiteSpec]
    todo += [METHODS.get(name).params for name in METHODS.names()]
    while todo:
        model = todo.pop()
        if model.__name__ in found:
            continue
        found[model.__name__] = model
        for field in model.model_fields.values():
            todo += _models_in(field.annotation)
    return found


def test_every_spec_field_is_keyed_or_explained() -> None:
    missing = [
        f"{name}.{field}"
        for name, model in spec_models().items()
        if name not in WHOLE
        for field in model.model_fields
        if field not in FIELDS.get(name, {})
    ]
    assert not missing, (
        f"suite fields {missing} are neither keyed nor explained: if a field changes a "
        "checkpoint, predictions, corrupted images or metric values, put it into that "
        "artifact's cache key (harness/run/session.py checkpoint_key / prediction_key / "
        "model_identity, or the data fingerprint), then list it in FIELDS of "
        f"{__file__} as 'keyed: <where>'; otherwise list it as 'no artifact: <reason>'"
    )


def test_table_names_only_existing_fields() -> None:
    models = spec_models()
    stale = [
        f"{name}.{field}"
        for name, fields in FIELDS.items()
        for field in fields
        if name not in models or field not in models[name].model_fields
    ]
    stale += [name for name in WHOLE if name not in models]
    assert not stale, f"FIELDS/WHOLE list fields the schema no longer has: {stale}"


def test_every_entry_says_keyed_or_why_not() -> None:
    bad = [
        f"{name}.{field}"
        for name, fields in FIELDS.items()
        for field, why in fields.items()
        if not why.startswith((KEYED, NO_ARTIFACT)) or why in (KEYED, NO_ARTIFACT)
    ]
    assert not bad, f"entries {bad} must say 'keyed: <where>' or 'no artifact: <reason>'"


def test_models_keyed_whole_dump_every_field() -> None:
    models = spec_models()
    excluded = [
        f"{name}.{field}"
        for name in WHOLE
        for field, info in models[name].model_fields.items()
        if info.exclude
    ]
    assert not excluded, f"fields {excluded} are excluded from dumps, so from their keys"

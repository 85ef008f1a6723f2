"""Suite files: typed schema, YAML loader, thresholds and pass/fail decisions."""

from robustness_harness.suite.loader import Suite, canonical_json, load_suite, parse_suite
from robustness_harness.suite.schema import (
    CheckSpec,
    CompressStep,
    DataSpec,
    FinetuneSpec,
    ModelSpec,
    Number,
    SuiteSpec,
    VariantSpec,
)
from robustness_harness.suite.thresholds import Decision, Thresholds, decide, reduce_per_class

__all__ = [
    "CheckSpec",
    "CompressStep",
    "DataSpec",
    "Decision",
    "FinetuneSpec",
    "ModelSpec",
    "Number",
    "Suite",
    "SuiteSpec",
    "Thresholds",
    "VariantSpec",
    "canonical_json",
    "decide",
    "load_suite",
    "parse_suite",
    "reduce_per_class",
]

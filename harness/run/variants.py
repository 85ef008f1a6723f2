"""Which model of a suite a build or measurement belongs to: one of the suite's variants,
run ``r`` of a variant with ``runs: N``, or the float model a quantized variant is
quantized from. The suite file names only the first; the others are ``VariantRef`` values,
never names to parse."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from robustness_harness.compress.quantize import split_quantize_steps
from robustness_harness.suite import Suite
from robustness_harness.suite.schema import VariantSpec


@dataclass(frozen=True)
class VariantRef:
    """A derived model of the suite's variant ``variant``: run ``run`` of it (seeded
    ``seed + run``; 0 is the variant itself) and, with ``float_source``, its compress steps
    without the trailing quantize steps (what a quantized variant is quantized from)."""

    variant: str
    run: int = 0
    float_source: bool = False

    def __str__(self) -> str:
        """A label for progress lines and checkpoint metadata (``dense#run1~float``)."""
        return f"{self.variant}{f'#run{self.run}' if self.run else ''}" + (
            "~float" if self.float_source else ""
        )


Variant = str | VariantRef
"""A suite's variant by name, or a ``VariantRef`` derived from one."""


def as_ref(variant: Variant) -> VariantRef:
    """``variant`` as a ``VariantRef`` (a name is the variant itself)."""
    return variant if isinstance(variant, VariantRef) else VariantRef(variant)


def suite_variant(variant: Variant) -> str:
    """The name of the suite variant ``variant`` is, or is derived from."""
    return as_ref(variant).variant


def run_of(variant: Variant, run: int) -> Variant:
    """Run ``run`` of ``variant`` (``variant`` itself for run 0)."""
    if run == 0:
        return variant
    return dataclasses.replace(as_ref(variant), run=run)


def variant_spec(suite: Suite, variant: Variant) -> VariantSpec:
    """The spec ``variant`` builds from: the suite's, with ``runs: 1`` for a run and
    without the trailing quantize steps for a float source."""
    ref = as_ref(variant)
    spec = suite.spec.variants[ref.variant]
    if ref.run:
        spec = spec.model_copy(update={"runs": 1})
    if ref.float_source:
        float_steps, _ = _split(suite, ref.variant, spec.compress)
        spec = spec.model_copy(update={"compress": float_steps})
    return spec


def quantize_split(suite: Suite, variant: Variant) -> tuple[list, list]:
    """``(float steps, trailing quantize steps)`` of ``variant``'s compress list (a float
    source has no quantize steps)."""
    return _split(suite, suite_variant(variant), variant_spec(suite, variant).compress)


def _split(suite: Suite, name: str, steps: list) -> tuple[list, list]:
    return split_quantize_steps(steps, file=str(suite.path), field=f"variants.{name}.compress")

"""Suite YAML texts used by the plugin tests, and the builder that writes them."""

from __future__ import annotations


def pruned(name: str, method: str, sparsity: float, *keys: str) -> str:
    """YAML lines of variant ``name``: one prune step, then ``keys`` (e.g. ``runs: 2``)."""
    step = f"{{prune: {{method: {method}, sparsity: {sparsity}}}}}"
    lines = [f"  {name}:", f"    compress: [{step}]", *(f"    {key}" for key in keys)]
    return "".join(f"{line}\n" for line in lines)


def magnitude(percent: int, *keys: str) -> str:
    """Variant ``magnitude-<percent>``: global magnitude pruning to ``percent`` % sparsity."""
    return pruned(f"magnitude-{percent}", "global_magnitude", percent / 100, *keys)


def suite_text(name: str, variants: str, checks: str, *, seed: int | None = None) -> str:
    """A toydrive-fcos suite on toydrive/val whose baseline is variant ``dense``.

    ``variants`` and ``checks`` are indented YAML lines placed under ``variants:`` (after
    ``dense``) and ``checks:``.
    """
    seed_line = "" if seed is None else f"seed: {seed}\n"
    return (
        f"\nsuite: {name}\n"
        "model: {name: toydrive-fcos}\n"
        "data: {name: toydrive, split: val}\n"
        f"{seed_line}"
        "baseline: dense\n"
        "variants:\n"
        "  dense: {}\n"
        f"{variants}"
        "checks:\n"
        f"{checks}"
    )


def _tiny_suite(drop_max: float, extra_variants: str = "") -> str:
    return suite_text(
        "tiny",
        magnitude(30, "finetune: {epochs: 1, max_steps: 2, batch_size: 4}") + extra_variants,
        f"  clean_map_drop: {{metric: map, drop_max: {drop_max}}}\n"
        "  worst_class_ap: {metric: per_class_ap, reduce: worst_drop, max: 1.0}\n",
        seed=0,
    )


GOOD_SUITE = _tiny_suite(0.5)

BAD_SUITE = suite_text(
    "bad",
    pruned("structured-70", "l1_filter", 0.7),
    "  clean_map_drop: {metric: map, drop_max: 0.02}\n",
    seed=0,
)

# l1-30 is not fine-tuned (mAP falls to ~0): this suite tests scheduling, not quality.
TWO_VARIANT_SUITE = _tiny_suite(1.0, pruned("l1-30", "l1_filter", 0.3))

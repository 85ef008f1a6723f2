"""Suite YAML texts used by the plugin tests."""

GOOD_SUITE = """
suite: tiny
model: {name: toydrive-fcos}
data: {name: toydrive, split: val}
seed: 0
baseline: dense
variants:
  dense: {}
  magnitude-30:
    compress: [{prune: {method: global_magnitude, sparsity: 0.3}}]
    finetune: {epochs: 1, max_steps: 2, batch_size: 4}
checks:
  clean_map_drop: {metric: map, drop_max: 0.5}
  worst_class_ap: {metric: per_class_ap, reduce: worst_drop, max: 1.0}
"""

BAD_SUITE = """
suite: bad
model: {name: toydrive-fcos}
data: {name: toydrive, split: val}
seed: 0
baseline: dense
variants:
  dense: {}
  structured-70:
    compress: [{prune: {method: l1_filter, sparsity: 0.7}}]
checks:
  clean_map_drop: {metric: map, drop_max: 0.02}
"""


# l1-30 is not fine-tuned (mAP falls to ~0): this suite tests scheduling, not quality.
TWO_VARIANT_SUITE = GOOD_SUITE.replace("drop_max: 0.5", "drop_max: 1.0").replace(
    "checks:",
    """  l1-30:
    compress: [{prune: {method: l1_filter, sparsity: 0.3}}]
checks:""",
)

"""AGP (gradual magnitude pruning interleaved with fine-tuning) through a suite."""

from __future__ import annotations

import pytest

from tests.plugin.suite_texts import suite_text

pytestmark = pytest.mark.slow  # every test here builds or trains a variant

SUITE = suite_text(
    "agp",
    """\
  agp-60:
    compress:
      - prune: {method: global_magnitude, sparsity: 0.6, schedule: agp, steps: 3, prune_every: 2}
    finetune: {epochs: 1, max_steps: 2, batch_size: 4}
  l1-agp-50:
    compress:
      - prune: {method: l1_filter, sparsity: 0.5, schedule: agp, steps: 2, prune_every: 1}
""",
    """\
  clean_map_drop: {metric: map, drop_max: 1.0}
  size: {metric: size, measure: sparsity, min: 0.59}
apply: {size: [agp-60]}
""",
)


def test_agp_variant_builds_prunes_gradually_and_reaches_the_target(
    suite_dir: pytest.Pytester,
) -> None:
    (suite_dir.path / "suites" / "agp.yaml").write_text(SUITE)
    result = suite_dir.runpytest("suites", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    for line in (
        "global_magnitude agp 0/3: sparsity 0.000",
        "global_magnitude agp 1/3: sparsity 0.422",  # 0.6 - 0.6 (2/3)^3
        "global_magnitude agp 2/3: sparsity 0.578",  # 0.6 - 0.6 (1/3)^3
        "global_magnitude agp 3/3: sparsity 0.600",
    ):
        assert line in out, out
    assert "sparsity 0.60" in out  # the saved checkpoint
    assert "l1_filter agp 1/2: sparsity 0.438, params" in out  # 0.5 - 0.5 (1/2)^3
    assert "l1_filter agp 2/2: sparsity 0.500, params" in out

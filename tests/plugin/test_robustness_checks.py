"""Robustness checks end to end through the plugin on a small toysigns classifier suite:
corruptions, attacks, calibration, stability, size, latency and the CUDA skip."""

from __future__ import annotations

import pytest

from tests.plugin.suite_texts import junit_properties, toysigns_suite

pytestmark = pytest.mark.slow  # every test here builds or trains a variant

SUITE = toysigns_suite(
    "signs",
    """\
  accuracy: {metric: accuracy, drop_max: 1}
  worst_class: {metric: per_class_accuracy, reduce: worst_drop, max: 1}
  noise_mpc: {metric: mpc, corruptions: noise, severities: [1, 5], ratio_min: 0}
  noise_rpc: {metric: rpc, corruptions: [gaussian_noise, fog], severities: 3, ratio_min: 0}
  ece_under_fog: {metric: ece, bins: 10, corruptions: [fog], severities: [2], increase_max: 1}
  pgd: {metric: pgd_accuracy, eps: 2/255, alpha: 1/255, steps: 3, images: 20, drop_max: 1}
  fgsm: {metric: fgsm_accuracy, eps: 2/255, images: 20, drop_max: 1}
  calibration: {metric: ece, binning: equal_mass, bins: 5, increase_max: 1}
  flips: {metric: flip_rate, max: 1}
  saliency: {metric: saliency_change, images: 8, max: 1}
  size: {metric: size, measure: nonzero_params, ratio_max: 0.6}
  latency: {metric: latency_ms, iters: 3, warmup: 1, ratio_max: 100}
  latency_cuda: {metric: latency_ms, device: cuda, iters: 3, ratio_max: 100}
""",
)


def test_robustness_checks_run_cache_and_skip_without_gpu(suite_dir: pytest.Pytester) -> None:
    (suite_dir.path / "suites" / "signs.yaml").write_text(SUITE)
    first = suite_dir.runpytest("suites", "-rs", "--junitxml=first.xml", "-p", "no:cacheprovider")
    out = first.stdout.str()
    import torch

    gpu = torch.cuda.is_available()
    first.assert_outcomes(passed=13 if gpu else 12, skipped=0 if gpu else 1)
    if not gpu:
        assert "device 'cuda' requested but no CUDA GPU is present" in out
    assert "corruptions: predicting signs/magnitude-50 under 6 (corruption, severity)" in out
    props = junit_properties(suite_dir.path / "first.xml")
    mpc = props["noise_mpc"]
    assert mpc["harness_metric"] == "mpc"
    assert 0 < float(mpc["harness_value"]) <= 1
    assert 0 < float(props["noise_rpc"]["harness_value"]) <= 1.5
    assert float(props["size"]["harness_value"]) <= 0.51 * float(
        props["size"]["harness_baseline_value"]
    )
    assert float(props["pgd"]["harness_value"]) <= float(props["pgd"]["harness_clean_accuracy"])
    assert props["latency"]["harness_timer"] == "perf_counter_ns"
    assert float(props["latency"]["harness_p90"]) >= float(props["latency"]["harness_p50"])

    second = suite_dir.runpytest("suites", "--junitxml=second.xml", "-p", "no:cacheprovider")
    second.assert_outcomes(passed=13 if gpu else 12, skipped=0 if gpu else 1)
    warm = second.stdout.str()
    assert "corruptions: predicting" not in warm and "built checkpoint" not in warm
    assert "measured pgd_accuracy" not in warm  # attack results are cached values
    again = junit_properties(suite_dir.path / "second.xml")
    deterministic = ("noise_mpc", "noise_rpc", "ece_under_fog", "pgd", "fgsm", "flips", "saliency")
    for check in deterministic:
        assert again[check]["harness_value"] == props[check]["harness_value"], check


def test_failing_corruption_gate_names_the_grid(suite_dir: pytest.Pytester) -> None:
    text = SUITE.replace("severities: [1, 5], ratio_min: 0}", "severities: [1, 5], min: 0.999}")
    (suite_dir.path / "suites" / "signs.yaml").write_text(text)
    result = suite_dir.runpytest("suites", "-k", "noise_mpc", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)  # min is absolute: the baseline is gated too
    out = result.stdout.str()
    assert "mpc 0." in out and "< min 0.999" in out
    assert "3 corruptions × 2 severities" in out

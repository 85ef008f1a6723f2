"""Statistics for gates: bootstrap coverage, t-tests and ANOVA against scipy, messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from robustness_harness.errors import HarnessError
from robustness_harness.run.outcome import CheckOutcome, GateStatistics
from robustness_harness.stats import (
    counts_from_indices,
    one_way_anova,
    paired_bootstrap,
    run_t_test,
)
from robustness_harness.suite import Thresholds, decide
from robustness_harness.suite.thresholds import Interval, Limit
from tests.unit.builders import suite_head

DROP_MAX = Limit("drop", "drop_max", 0.05, True)


def test_counts_from_indices() -> None:
    idx = np.array([[0, 0, 2, 3], [1, 1, 1, 1]])
    assert counts_from_indices(idx, 4).tolist() == [[2, 0, 1, 1], [0, 4, 0, 0]]


def _drop_statistic(base: np.ndarray, cand: np.ndarray):
    """Accuracy drop of every resample: both from the same image multiplicities."""
    diff = base.astype(float) - cand.astype(float)
    return lambda counts: (counts @ diff / counts.sum(axis=1))[None, :]


def test_bootstrap_ci_covers_a_known_drop_at_the_nominal_rate() -> None:
    """200 simulated paired test sets (400 images; baseline 80 % correct, the candidate
    loses 6 % of the baseline's hits and gains 1 % of its misses: true drop 0.046).
    The 90 % percentile CI of the drop must cover it 90 % ± 5 pp of the time."""
    rng = np.random.default_rng(123)
    n, sims, true_drop = 400, 200, 0.8 * 0.06 - 0.2 * 0.01
    covered = 0
    for s in range(sims):
        base = rng.random(n) < 0.8
        cand = np.where(base, rng.random(n) >= 0.06, rng.random(n) < 0.01)
        res = paired_bootstrap(
            _drop_statistic(base, cand), n, confidence=0.9, resamples=500, seed=s
        )
        ci = res.intervals[0]
        covered += ci.low <= true_drop <= ci.high
    assert abs(covered / sims - 0.9) <= 0.05, covered / sims


def test_bootstrap_is_paired_seeded_and_leaves_global_rng_alone() -> None:
    rng = np.random.default_rng(0)
    hits = rng.random(50) < 0.7
    state = np.random.get_state()
    same = paired_bootstrap(_drop_statistic(hits, hits), 50, confidence=0.95, seed=1)
    assert same.intervals == [Interval(0.0, 0.0, 0.95)]  # identical models: drop is always 0
    worse = hits & (rng.random(50) < 0.8)
    a = paired_bootstrap(_drop_statistic(hits, worse), 50, confidence=0.95, seed=7)
    b = paired_bootstrap(_drop_statistic(hits, worse), 50, confidence=0.95, seed=7)
    c = paired_bootstrap(_drop_statistic(hits, worse), 50, confidence=0.95, seed=8)
    assert a.intervals == b.intervals
    assert np.array_equal(a.distribution, b.distribution)
    assert not np.array_equal(a.distribution, c.distribution)
    assert a.distribution.shape == (1, 1000) and a.resamples == 1000
    assert a.intervals[0].low >= 0  # the candidate only loses hits
    assert np.random.get_state()[1].tolist() == state[1].tolist()


def test_bootstrap_nan_resamples_give_an_undefined_interval() -> None:
    def statistic(counts: np.ndarray) -> np.ndarray:
        value = np.where(counts[:, 0] > 0, np.nan, 1.0)  # NaN when image 0 is drawn
        return np.vstack([value, np.ones(len(counts))])

    res = paired_bootstrap(statistic, 5, confidence=0.95, resamples=100, seed=0)
    assert not res.intervals[0].defined
    assert res.intervals[1] == Interval(1.0, 1.0, 0.95)


def test_exception_bootstrap_needs_two_images() -> None:
    with pytest.raises(HarnessError, match="at least 2 images"):
        paired_bootstrap(lambda c: c[None, :, 0], 1, confidence=0.95)


# ----------------------------------------------------------------------------- t-test
CAND = np.array([0.412, 0.398, 0.431, 0.405])
BASE = np.array([0.501, 0.497, 0.512, 0.494])


def test_run_t_test_equals_scipy_ttest_rel() -> None:
    test = run_t_test(BASE - CAND, DROP_MAX, confidence=0.95)
    ref_ci = scipy.stats.ttest_rel(BASE, CAND).confidence_interval(0.95)
    assert (test.interval.low, test.interval.high) == pytest.approx(
        (ref_ci.low, ref_ci.high), rel=1e-12
    )
    shifted = scipy.stats.ttest_rel(BASE - DROP_MAX.limit, CAND, alternative="greater")
    assert test.statistic == pytest.approx(shifted.statistic, rel=1e-12)
    assert test.pvalue == pytest.approx(shifted.pvalue, rel=1e-12)
    # by hand: mean drop 0.0895, sd 0.00661..., t = (0.0895 - 0.05) / (sd / 2)
    d = BASE - CAND
    t = (d.mean() - 0.05) / (d.std(ddof=1) / 2)
    assert test.statistic == pytest.approx(t, rel=1e-9)
    assert test.pvalue < 0.001  # drop is significantly above 0.05
    assert test.describe().startswith("paired t over 4 runs: drop 95% CI [0.0")


def test_run_t_test_lower_limit_and_no_spread() -> None:
    ratio_min = Limit("ratio", "ratio_min", 0.9, False)
    test = run_t_test(CAND / BASE, ratio_min, confidence=0.9)
    ref = scipy.stats.ttest_1samp(CAND / BASE, 0.9, alternative="less")
    assert test.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    flat = run_t_test([0.3, 0.3, 0.3], ratio_min, confidence=0.9)
    assert flat.interval == Interval(0.3, 0.3, 0.9) and math.isnan(flat.pvalue)
    with pytest.raises(HarnessError, match="at least 2 runs"):
        run_t_test([0.3], ratio_min, confidence=0.9)


# ------------------------------------------------------------------------------ ANOVA
def test_one_way_anova_by_hand_and_against_scipy() -> None:
    res = one_way_anova({"a": [1, 2, 3], "b": [4, 5, 6]})
    # SSB = 3·1.5² + 3·1.5² = 13.5 on 1 df; SSW = 2 + 2 = 4 on 4 df → F = 13.5
    assert res.f == pytest.approx(13.5)
    assert res.p == pytest.approx(scipy.stats.f.sf(13.5, 1, 4))
    groups = {"dense": [0.5], "p50": [0.41, 0.40, 0.43], "p70": [0.31, 0.35, 0.30]}
    ref = scipy.stats.f_oneway(*groups.values())
    got = one_way_anova(groups)
    assert (got.f, got.p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    assert got.describe().startswith("ANOVA across 3 variants: F ")
    with pytest.raises(HarnessError, match="repeated runs"):
        one_way_anova({"a": [1.0], "b": [2.0]})


# ----------------------------------------------------------------------- the gate message
def test_failure_message_names_the_interval() -> None:
    th = Thresholds(drop_max=0.08)
    ci = Interval(0.081, 0.143, 0.95)
    decision = decide(th, 0.319, 0.431, intervals={"drop": ci}, mode="lenient")
    stats = GateStatistics(
        decide="lenient",
        method="bootstrap",
        intervals={"drop": ci},
        resamples=1000,
        seeds=[0, 1, 2],
        run_values=[0.31, 0.32, 0.327],
    )
    out = CheckOutcome(
        suite="s",
        variant="structured-50",
        check="clean",
        metric="map",
        value=0.319,
        baseline_value=0.431,
        decision=decision,
        thresholds=th,
        baseline_variant="dense",
        n_images=400,
        seed=0,
        statistics=stats,
    )
    head, context = out.message().splitlines()
    assert head == (
        "mAP 0.319 ± 0.009 (mean of 3 runs) (baseline 0.431) "
        "drop 95% CI [0.081, 0.143] > drop_max 0.08 (decide: lenient)"
    )
    assert context == (
        "baseline 'dense' | 400 images | seeds 0, 1, 2 (3 runs) | 95% CI of drop [0.081, 0.143]"
    )
    props = out.properties()
    assert props["harness_ci_drop_low"] == 0.081 and props["harness_ci_drop_high"] == 0.143
    assert props["harness_runs"] == 3 and props["harness_seeds"] == "0,1,2"
    assert props["harness_decide"] == "lenient" and props["harness_resamples"] == 1000


# -------------------------------------------------------- recomputing metrics on multisets
class _Labels:
    """Classification targets (what the classification metrics read)."""

    def __init__(self, labels: dict[int, int], k: int) -> None:
        self._labels = labels
        self.image_ids = sorted(labels)
        self.categories = [{"id": c + 1, "name": f"c{c}"} for c in range(k)]
        self.class_names = [c["name"] for c in self.categories]
        self.num_classes = k

    def label(self, image_id: int) -> int:
        return self._labels[image_id]

    def labels(self, image_ids: object = None) -> np.ndarray:
        ids = self.image_ids if image_ids is None else image_ids
        return np.array([self._labels[int(i)] for i in ids], np.int64)  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["accuracy", "per_class_accuracy", "ece", "flip_rate"])
def test_recomputed_metrics_on_multisets_equal_duplicated_data(name: str) -> None:
    from robustness_harness.inference.predictions import ClassPredictions
    from robustness_harness.metrics import METRICS
    from robustness_harness.metrics.base import MetricInputs
    from robustness_harness.metrics.resample import resampled_values

    rng = np.random.default_rng(3)
    ids = [5, 9, 12, 20, 31, 40]
    data = _Labels({i: int(rng.integers(0, 3)) for i in ids}, 3)
    preds = ClassPredictions(ids, rng.normal(size=(6, 3)).astype(np.float32))
    base = ClassPredictions(ids, rng.normal(size=(6, 3)).astype(np.float32))
    info = METRICS.get(name)
    inputs = MetricInputs(data, preds, base if info.inputs == "pair" else None)
    counts = np.array([[1, 1, 1, 1, 1, 1], [0, 3, 0, 1, 2, 0]])
    got = resampled_values(info, "classification", inputs, {})(counts)
    for b, multiset in enumerate([ids, [9, 9, 9, 20, 31, 31]]):
        dup = _Labels({i: data.label(i) for i in ids}, 3)
        dup.image_ids = multiset  # the data with images repeated explicitly
        args = (preds, base, dup) if info.inputs == "pair" else (preds, dup)
        want = info(*args).value
        if isinstance(want, dict):
            for k, v in want.items():
                assert np.array_equal(got[k][b], v, equal_nan=True)
        else:
            assert got[b] == want
    assert not METRICS.get("ece").resamplable("detection")
    assert METRICS.get("map").resamplable("detection")
    assert not METRICS.get("latency_ms").resamplable("classification")


# ------------------------------------------------------------------------ suite keys
def test_statistics_keys_parse_with_the_real_metrics(tmp_path) -> None:
    from robustness_harness.errors import SpecError
    from robustness_harness.suite import parse_suite

    variants = "  p30:\n    compress: [{prune: {method: global_magnitude, sparsity: 0.3}}]\n"
    text = "\n" + suite_head(variants + "    runs: 3\n")
    text += """\
  clean: {metric: map, drop_max: 0.02, confidence: 0.95, decide: conservative, resamples: 500}
  runs: {metric: latency_ms, ratio_max: 0.7, runs_test: paired_t, confidence: 0.9,
         decide: lenient, anova: true}
"""
    spec = parse_suite(text, tmp_path / "s.yaml").spec
    assert spec.variants["p30"].runs == 3 and spec.variants["dense"].runs == 1
    clean, runs = spec.checks["clean"], spec.checks["runs"]
    assert clean.bootstrap and (clean.confidence, clean.resamples) == (0.95, 500)
    assert not runs.bootstrap and runs.runs_test == "paired_t" and runs.anova
    with pytest.raises(SpecError, match=r"checks\.clean\.confidence: must be < 1, got 95"):
        parse_suite(text.replace("confidence: 0.95", "confidence: 95"), tmp_path / "s.yaml")
    with pytest.raises(SpecError, match=r"checks\.clean\.resamples: resamples sets the bootstrap"):
        parse_suite(
            text.replace("confidence: 0.95, decide: conservative, ", ""), tmp_path / "s.yaml"
        )

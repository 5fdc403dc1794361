"""Statistics: agreement with SciPy, bootstrap coverage, degenerate inputs, paired tests, table helpers."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from wfutils.evaluation import statistics as stats


def test_intervals_and_p_values_agree_with_scipy_on_the_same_data() -> None:
    rng = np.random.default_rng(11)
    a = rng.beta(4, 2, size=150)
    b = np.clip(a - 0.05 + rng.normal(0, 0.1, size=150), 0, 1)

    ci = stats.mean_ci(a, n_boot=1500, seed=3, alpha=0.1)
    direct = scipy_stats.bootstrap((a,), np.mean, n_resamples=1500, method="BCa", confidence_level=0.9, rng=3)
    assert (ci.low, ci.high) == pytest.approx((direct.confidence_interval.low, direct.confidence_interval.high),
                                              rel=1e-12)
    assert ci.estimate == pytest.approx(a.mean())

    r = stats.paired_comparison(a, b, n_boot=1500, seed=3)
    diff = scipy_stats.bootstrap((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), paired=True,
                                 n_resamples=1500, method="BCa", rng=3)
    assert (r.diff_low, r.diff_high) == pytest.approx(
        (diff.confidence_interval.low, diff.confidence_interval.high), rel=1e-9)
    rel = scipy_stats.bootstrap((a, b), lambda x, y, axis: 100 * (x.mean(axis) - y.mean(axis)) / y.mean(axis),
                                paired=True, n_resamples=1500, method="BCa", rng=3)
    assert (r.rel_low, r.rel_high) == pytest.approx((rel.confidence_interval.low, rel.confidence_interval.high),
                                                    rel=1e-9)
    # The sign-flip test is SciPy's paired permutation test (pairs swapped at random), seeded with seed + 1.
    perm = scipy_stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis),
                                        permutation_type="samples", n_resamples=1500, rng=4)
    assert r.p_permutation == pytest.approx(perm.pvalue, rel=1e-12)
    assert r.p_bootstrap == stats.bootstrap_p_value(diff.bootstrap_distribution, r.diff)


def test_bootstrap_ci_covers_true_mean_at_nominal_rate() -> None:
    # Skewed scores in [0, 1] like FlowSim: Beta(2, 5), true mean 2/7.
    rng = np.random.default_rng(123)
    true_mean = 2 / 7
    trials = 600
    covered = 0
    for t in range(trials):
        sample = rng.beta(2, 5, size=80)
        ci = stats.mean_ci(sample, n_boot=1000, seed=t)
        assert ci.low <= ci.estimate <= ci.high
        covered += ci.low <= true_mean <= ci.high
    rate = covered / trials
    # Nominal 95%; 3 binomial standard errors at 600 trials are about 0.027.
    assert 0.915 <= rate <= 0.975, rate


def test_intervals_nest_by_level_repeat_by_seed_and_pairing_narrows_them() -> None:
    rng = np.random.default_rng(8)
    a = rng.beta(2, 3, size=120)
    widths = []
    for alpha in (0.2, 0.1, 0.05, 0.01):
        ci = stats.mean_ci(a, n_boot=2000, seed=1, alpha=alpha)
        widths.append(ci.high - ci.low)
    assert widths == sorted(widths) and widths[0] < widths[-1]  # 80% inside 90% inside 95% inside 99%
    assert stats.mean_ci(a, n_boot=500, seed=5) == stats.mean_ci(a, n_boot=500, seed=5)
    assert stats.mean_ci(a, n_boot=500, seed=5) != stats.mean_ci(a, n_boot=500, seed=6)

    # Two systems that find the same examples hard: pairing removes the shared difficulty.
    b = np.clip(a + 0.03 + rng.normal(0, 0.03, size=120), 0, 1)
    paired = stats.paired_comparison(b, a, n_boot=2000, seed=0)
    unpaired = scipy_stats.bootstrap((b, a), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=False,
                                     n_resamples=2000, method="BCa", rng=0).confidence_interval
    assert paired.diff_high - paired.diff_low < 0.5 * (unpaired.high - unpaired.low)
    assert paired.diff_low > 0 > unpaired.low


def test_degenerate_samples_give_the_documented_results_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        constant = stats.mean_ci(np.full(50, 0.7), n_boot=300)
        assert (constant.estimate, constant.low, constant.high, constant.n) == pytest.approx((0.7, 0.7, 0.7, 50))
        single = stats.mean_ci([0.4], n_boot=300)
        assert (single.low, single.high, single.n) == (0.4, 0.4, 1)
        two = stats.mean_ci([0.2, 0.8], n_boot=300)
        assert 0.2 <= two.low <= two.estimate <= two.high <= 0.8 and two.low < two.high
        assert np.isnan(stats.mean_ci([], n_boot=300).estimate)

        shift = stats.paired_comparison(np.linspace(0.2, 0.8, 30) + 0.1, np.linspace(0.2, 0.8, 30), n_boot=300)
        assert shift.diff_low == pytest.approx(0.1) and shift.diff_high == pytest.approx(0.1)  # every pair +0.1
        assert shift.rel_low < shift.rel_improvement_pct < shift.rel_high  # the base mean still varies
        one = stats.paired_comparison(np.array([0.9]), np.array([0.5]), n_boot=300)
        assert (one.diff_low, one.diff_high) == pytest.approx((0.4, 0.4))
        assert np.isnan(one.p_bootstrap) and np.isnan(one.p_permutation)  # no test on one example
        zero_base = stats.paired_comparison(np.array([0.5, 0.6, 0.7]), np.zeros(3), n_boot=300)
        assert np.isnan(zero_base.rel_improvement_pct) and np.isnan(zero_base.rel_low)
        assert zero_base.diff_low <= zero_base.diff <= zero_base.diff_high
    with pytest.raises(ValueError, match="1 NaN of 3"):
        stats.mean_ci([0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="scores b contain 1 NaN"):
        stats.paired_comparison(np.array([0.1, 0.2]), np.array([0.1, np.nan]))


def test_bootstrap_spread_matches_standard_error_and_pairs_columns() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    boot = stats.bootstrap_means(np.stack([x, x, 2 * x], axis=1), n_boot=3000, seed=1)
    assert boot.shape == (3000, 3)
    np.testing.assert_allclose(boot[:, 0], boot[:, 1])  # same resamples for every column
    np.testing.assert_allclose(boot[:, 2], 2 * boot[:, 0])
    assert boot[:, 0].std() == pytest.approx(x.std() / np.sqrt(400), rel=0.08)
    # chunking does not change the counts' total
    for counts in stats.resample_counts(7, 10, seed=0, chunk=3):
        assert counts.shape[1] == 7 and (counts.sum(axis=1) == 7).all()


def test_paired_comparison_detects_a_real_difference_and_not_a_null_one() -> None:
    rng = np.random.default_rng(5)
    base = rng.uniform(0.3, 0.9, size=200)
    better = np.clip(base + 0.05 + rng.normal(0, 0.05, size=200), 0, 1)
    r = stats.paired_comparison(better, base, n_boot=2000, seed=0)
    assert r.n == 200
    assert r.diff == pytest.approx(better.mean() - base.mean())
    assert r.diff_low > 0 and r.p_bootstrap < 0.01 and r.p_permutation < 0.01
    assert r.rel_improvement_pct == pytest.approx(100 * (better.mean() - base.mean()) / base.mean())
    assert r.rel_low < r.rel_improvement_pct < r.rel_high

    null_p = [stats.paired_comparison(rng.uniform(size=50), rng.uniform(size=50), n_boot=400, seed=i).p_permutation
              for i in range(150)]
    assert 0.01 <= np.mean(np.asarray(null_p) < 0.05) <= 0.12  # about 5% false positives
    same = stats.paired_comparison(base, base, n_boot=200)
    assert same.diff == 0 and same.p_permutation == 1.0


def test_relative_improvement_and_holm() -> None:
    assert stats.relative_improvement(0.55, 0.5) == pytest.approx(10.0)
    assert np.isnan(stats.relative_improvement(0.5, 0.0))
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, np.nan]), [0.03, 0.06, 0.06, np.nan])


def test_average_relative_improvement_is_the_mean_of_per_system_percentages() -> None:
    rng = np.random.default_rng(2)
    n = 300
    frame = pd.DataFrame({"slm-a": np.full(n, 0.6), "llm1": np.full(n, 0.5), "llm2": np.full(n, 0.4)})
    frame += rng.normal(0, 0.01, size=frame.shape)
    frame.loc[3, "llm2"] = np.nan  # not predicted by one system: dropped for all
    out = stats.average_relative_improvement(frame, "slm-a", ["llm1", "llm2"], n_boot=500)
    kept = frame.dropna()
    expected = np.mean([100 * (kept["slm-a"].mean() - kept[c].mean()) / kept[c].mean() for c in ("llm1", "llm2")])
    assert out["n"] == n - 1
    assert out["estimate"] == pytest.approx(expected)  # about (20% + 50%) / 2
    assert out["estimate"] == pytest.approx(35.0, abs=1.0)
    assert out["low"] < out["estimate"] < out["high"]


ARMS = {"slm-x": "fine-tuned", "gpt-few_shot": "prompted"}


def tidy(values: dict[str, np.ndarray], subset: str = "test") -> pd.DataFrame:
    """Scores as evaluate_run lays them out, with the systems' metadata columns."""
    rows = []
    for system, vals in values.items():
        meta = {"arm": ARMS[system], "base_model": "m", "n_params": 1, "strategy": "none", "k": 0, "retrieval": "none", "train_corpus": "synthetic"}
        for i, v in enumerate(vals):
            if not np.isnan(v):
                rows.append({"system": system, **meta, "subset": subset, "id": f"ex-{i}",
                             "metric": "flowsim_with_inputs", "value": v})
    return pd.DataFrame(rows)


def test_table_helpers_use_the_intersection_of_ids() -> None:
    rng = np.random.default_rng(9)
    slm = rng.uniform(0.6, 1.0, 40)
    llm = rng.uniform(0.2, 0.8, 40)
    llm[:4] = np.nan  # the prompted system skipped four examples
    scores = pd.concat([tidy({"slm-x": slm, "gpt-few_shot": llm}), tidy({"slm-x": slm[:10]}, "ood")])
    summary = stats.system_summary(scores, n_boot=300)
    row = summary[(summary.system == "slm-x") & (summary.subset == "test")].iloc[0]
    assert row["n"] == 40 and row["mean"] == pytest.approx(slm.mean())
    assert set(summary.subset) == {"test", "ood", "all"}  # "all" pools subsets every system ran
    assert summary[(summary.subset == "all") & (summary.system == "slm-x")]["n"].item() == 40
    assert dict(zip(summary.system, summary.arm)) == ARMS  # the metadata columns travel with the summary
    paired = stats.paired_comparisons(scores, n_boot=300)
    assert list(paired.columns) == list(stats.PAIRED_COLUMNS)
    assert len(paired) == 1
    assert (paired.iloc[0]["fine_tuned"], paired.iloc[0]["prompted"]) == ("slm-x", "gpt-few_shot")
    assert paired.iloc[0]["n"] == 36
    assert paired.iloc[0]["diff"] == pytest.approx(slm[4:].mean() - llm[4:].mean())
    features = pd.DataFrame({"id": ["ex-0", "ex-5", "ex-6"], "feature": ["flow_logic"] * 3})
    by_feature = stats.feature_summary(scores[scores.subset == "test"], features, n_boot=100)
    got = by_feature.set_index("system")
    assert got.loc["slm-x", "n"] == 3 and got.loc["gpt-few_shot", "n"] == 2
    assert got.loc["gpt-few_shot", "arm"] == "prompted"
    # Without metadata columns the arms must be named: never guessed from the names.
    bare = scores.drop(columns=["arm", "base_model", "n_params", "strategy", "k", "retrieval", "train_corpus"])
    with pytest.raises(ValueError, match="no 'arm' column"):
        stats.paired_comparisons(bare, n_boot=50)
    named = stats.paired_comparisons(bare, n_boot=300, fine_tuned=["gpt-few_shot"], prompted=["slm-x"])
    assert named.iloc[0]["diff"] == pytest.approx(-paired.iloc[0]["diff"])


def test_subgroup_gain_finds_where_the_gain_is() -> None:
    rng = np.random.default_rng(4)
    n = 200
    group = np.arange(n) < 80
    llm = rng.uniform(0.3, 0.7, n)
    slm = llm + np.where(group, 0.3, 0.02) + rng.normal(0, 0.02, n)
    frame = pd.DataFrame({"slm": slm, "llm": llm})
    g = stats.subgroup_gain(frame, "slm", ["llm"], group, n_boot=500)
    assert g["n_in"] == 80 and g["n_out"] == 120
    assert g["gain_in"] == pytest.approx(0.3, abs=0.01) and g["gain_out"] == pytest.approx(0.02, abs=0.01)
    assert g["low"] > 0.25

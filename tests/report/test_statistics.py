"""The report's statistics against direct SciPy / statsmodels / scikit-posthocs calls and
published constants, on data with known effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats
from statsmodels.stats.multitest import multipletests

from kdbench.report.statistics import (
    bootstrap_mean,
    case_matrix,
    critical_difference,
    friedman,
    pairwise_tests,
    rank_biserial,
    rank_stability,
    two_way_bootstrap_mean,
)


def _matrix(cases: int = 30, seed: int = 0) -> pd.DataFrame:
    """mono < kd (+0.05) < multi (+0.2) per case, with case difficulty and noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.4, 0.8, cases)
    return pd.DataFrame({
        "mono": base + rng.normal(0, 0.03, cases),
        "kd": base + 0.05 + rng.normal(0, 0.03, cases),
        "multi": base + 0.2 + rng.normal(0, 0.03, cases),
        "same": base + rng.normal(0, 0.03, cases),
    }, index=[f"c{i:02d}" for i in range(cases)])


def test_case_matrix_averages_seeds_and_keeps_complete_cases():
    rows = pd.DataFrame({
        "strategy": ["a", "a", "a", "b", "b", "a"],
        "seed": [0, 1, 0, 0, 1, 0],
        "case": ["x", "x", "y", "x", "x", "z"],
        "value": [0.2, 0.4, 0.9, 0.5, 0.7, 0.1],
    })
    matrix = case_matrix(rows, ["b", "a"])
    assert list(matrix.columns) == ["b", "a"] and list(matrix.index) == ["x"]  # y, z: a only
    assert matrix.loc["x", "a"] == pytest.approx(0.3) and matrix.loc["x", "b"] == pytest.approx(0.6)


def test_pairwise_tests_match_scipy_and_statsmodels():
    matrix = _matrix()
    table = pairwise_tests(matrix, "mono", higher_is_better=True, test="wilcoxon",
                           correction="holm", alpha=0.05, resamples=500,
                           rng=np.random.default_rng(0))
    versus = table[table["family"] == "baseline"].set_index("a")
    raw = [stats.wilcoxon(matrix[s], matrix["mono"]).pvalue for s in ("kd", "multi", "same")]
    holm = multipletests(raw, method="holm")[1]
    for strategy, p, p_adj in zip(("kd", "multi", "same"), raw, holm, strict=True):
        assert versus.loc[strategy, "p"] == pytest.approx(p, rel=1e-12)
        assert versus.loc[strategy, "p_adjusted"] == pytest.approx(p_adj, rel=1e-12)
        statistic = stats.wilcoxon(matrix[strategy], matrix["mono"]).statistic
        assert versus.loc[strategy, "statistic"] == pytest.approx(statistic)
    # the true effects are found, the null one is not
    assert versus.loc["kd", "significant"] and versus.loc["multi", "significant"]
    assert not versus.loc["same", "significant"]
    assert versus.loc["kd", "difference"] == pytest.approx((matrix["kd"] - matrix["mono"]).mean())
    assert versus.loc["kd", "difference_low"] < 0.05 < versus.loc["kd", "difference_high"]
    # all pairs: one Holm family of 6
    pairs = table[table["family"] == "pairs"]
    assert len(pairs) == 6
    raw_pairs = [stats.wilcoxon(matrix[a], matrix[b]).pvalue
                 for a, b in zip(pairs["a"], pairs["b"], strict=True)]
    assert pairs["p_adjusted"].to_numpy() == pytest.approx(
        multipletests(raw_pairs, method="holm")[1])


def test_paired_t_test_and_lower_is_better():
    matrix = _matrix() * -100  # smaller is better (as HD95): multi still the best
    table = pairwise_tests(matrix, "mono", higher_is_better=False, test="ttest",
                           correction="bonferroni", alpha=0.05, resamples=200,
                           rng=np.random.default_rng(1))
    row = table[(table["family"] == "baseline") & (table["a"] == "multi")].iloc[0]
    direct = stats.ttest_rel(matrix["multi"], matrix["mono"])
    assert row["p"] == pytest.approx(direct.pvalue) and row["statistic"] == pytest.approx(
        direct.statistic)
    assert row["p_adjusted"] == pytest.approx(min(1.0, direct.pvalue * 3))
    assert bool(row["better"]) and row["difference"] < 0
    worse = pairwise_tests(-matrix, "mono", higher_is_better=False, test="ttest",
                           correction="bonferroni", alpha=0.05, resamples=200,
                           rng=np.random.default_rng(1))
    assert not worse[(worse["family"] == "baseline") & (worse["a"] == "multi")]["better"].iloc[0]


def test_identical_strategies_are_not_different():
    matrix = pd.DataFrame({"a": [0.5, 0.6, 0.7], "b": [0.5, 0.6, 0.7]})
    row = pairwise_tests(matrix, "a", higher_is_better=True, test="wilcoxon",
                         correction="holm", alpha=0.05, resamples=100,
                         rng=np.random.default_rng(0)).iloc[0]
    assert row["p"] == 1.0 and not row["significant"] and row["rank_biserial"] == 0.0


def test_rank_biserial_from_the_wilcoxon_statistic():
    rng = np.random.default_rng(3)
    d = rng.normal(0.1, 0.3, 25)
    n = d.size
    # Kerby's r = (T+ - T-) / S with S = n(n+1)/2 and T+ SciPy's one-sided statistic
    t_plus = stats.wilcoxon(d, alternative="greater").statistic
    assert rank_biserial(d) == pytest.approx((2 * t_plus - n * (n + 1) / 2) / (n * (n + 1) / 2))
    assert rank_biserial(np.abs(d) + 0.01) == 1.0 and rank_biserial(-np.abs(d) - 0.01) == -1.0


def test_friedman_and_nemenyi_match_the_libraries():
    matrix = _matrix()[["mono", "kd", "multi"]]
    result = friedman(matrix, higher_is_better=True, alpha=0.05)
    direct = stats.friedmanchisquare(matrix["mono"], matrix["kd"], matrix["multi"])
    assert result.statistic == pytest.approx(direct.statistic)
    assert result.p == pytest.approx(direct.pvalue)
    nemenyi = sp.posthoc_nemenyi_friedman(matrix.to_numpy())
    assert result.nemenyi.to_numpy() == pytest.approx(nemenyi.to_numpy())
    assert list(result.nemenyi.columns) == ["mono", "kd", "multi"]
    assert result.ranks["multi"] < result.ranks["kd"] < result.ranks["mono"]  # 1 = best
    assert result.ranks["multi"] == pytest.approx(1.0)
    assert friedman(matrix[["mono", "kd"]], higher_is_better=True, alpha=0.05) is None


def test_critical_difference_matches_demsar_table():
    # Demšar (2006), Table 5: q_0.05 = 2.343 (k=3), 2.569 (k=4), 2.728 (k=5)
    for k, q in ((3, 2.343), (4, 2.569), (5, 2.728)):
        assert critical_difference(k, 20, 0.05) == pytest.approx(
            q * np.sqrt(k * (k + 1) / (6 * 20)), abs=2e-3)


def test_bootstrap_mean_ci_covers_the_normal_interval():
    rng = np.random.default_rng(5)
    values = rng.normal(0.7, 0.1, 400)
    ci = bootstrap_mean(values, 2000, np.random.default_rng(0))
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert ci.estimate == pytest.approx(values.mean())
    assert ci.low == pytest.approx(values.mean() - half, abs=0.003)
    assert ci.high == pytest.approx(values.mean() + half, abs=0.003)
    flat = bootstrap_mean(np.full(5, 0.3), 100, np.random.default_rng(0))
    assert (flat.low, flat.high) == (pytest.approx(0.3), pytest.approx(0.3))


def test_two_way_bootstrap_widens_with_seed_variance():
    rng = np.random.default_rng(2)
    cases = rng.normal(0.7, 0.05, (60, 1))
    calm = cases + rng.normal(0, 0.001, (60, 3))
    shaky = cases + np.array([[-0.1, 0.0, 0.1]])  # seeds disagree by ±0.1 on every case
    a = two_way_bootstrap_mean(calm, 1000, np.random.default_rng(0))
    b = two_way_bootstrap_mean(shaky, 1000, np.random.default_rng(0))
    assert a.low < calm.mean() < a.high and b.low < shaky.mean() < b.high
    assert (b.high - b.low) > 3 * (a.high - a.low)


def test_rank_stability():
    matrix = _matrix()
    result = rank_stability(matrix, higher_is_better=True, resamples=500,
                            rng=np.random.default_rng(0))
    assert result.ranking["multi"] == 1 and result.first["multi"] == 1.0
    assert result.frequencies.sum(axis=1).to_numpy() == pytest.approx(np.ones(4))
    # mono and same are indistinguishable: they share ranks 3 and 4
    assert 0.1 < result.frequencies.loc["mono", 3] < 0.9
    assert result.kendall_tau_median > 0.5
    again = rank_stability(matrix, higher_is_better=True, resamples=500,
                           rng=np.random.default_rng(0))
    pd.testing.assert_frame_equal(result.frequencies, again.frequencies)

"""The report's statistics on one comparison: the test cases × strategies matrix of one
(scenario, subset, N, region, metric), each case's value averaged over seeds first.

Everything a library provides is called, not re-implemented: bootstrap CIs
(``scipy.stats.bootstrap``, percentile method, cases resampled), Wilcoxon signed-rank and paired
t tests (scipy), Holm and other corrections (``statsmodels.stats.multitest.multipletests``),
Friedman (scipy), Nemenyi post-hoc (scikit-posthocs), Kendall's τ (scipy). What none of them
provides is written here and named: the matched-pairs rank-biserial correlation (Kerby, 2014),
Nemenyi's critical difference (Demšar, 2006, from scipy's studentized range), and challengeR's
bootstrap rank stability (Wiesenfarth et al., 2021).

Every random draw comes from a generator seeded by the caller: the same records give the same
numbers, byte for byte.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval."""

    estimate: float
    low: float
    high: float


def case_matrix(per_case: pd.DataFrame, strategies: list[str] | None = None) -> pd.DataFrame:
    """Cases × strategies: each case's value averaged over the seeds of each strategy, keeping
    only the cases every strategy has (a paired comparison needs both values of each pair).

    Args:
        per_case: tidy rows of one (scenario, subset, N, region, metric): ``strategy, seed,
            case, value``.
        strategies: column order (default: sorted names).
    """
    matrix = per_case.pivot_table(index="case", columns="strategy", values="value",
                                  aggfunc="mean", observed=True)
    matrix = matrix.reindex(columns=strategies or sorted(matrix.columns))
    return matrix.dropna(axis=0, how="any").sort_index()


def seeds_cases(per_case: pd.DataFrame) -> np.ndarray:
    """Cases × seeds values of one strategy (cases and seeds both complete)."""
    grid = per_case.pivot_table(index="case", columns="seed", values="value", aggfunc="mean")
    return grid.dropna(axis=0, how="any").dropna(axis=1, how="any").to_numpy(dtype=float)


def bootstrap_mean(values: np.ndarray, resamples: int, rng: np.random.Generator,
                   confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` with its percentile bootstrap CI (cases resampled).

    A single value, or values all equal, give a zero-width interval."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if values.size else float("nan")
    if values.size < 2 or np.ptp(values) == 0:
        return Interval(mean, mean, mean)
    result = stats.bootstrap((values,), np.mean, n_resamples=resamples, method="percentile",
                             confidence_level=confidence, rng=rng)
    ci = result.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high))


def two_way_bootstrap_mean(grid: np.ndarray, resamples: int, rng: np.random.Generator,
                           confidence: float = CONFIDENCE) -> Interval:
    """The mean of a cases × seeds grid with a percentile CI from resampling cases and seeds
    independently (both are random draws: the test cases from a population, the seeds from
    training randomness). SciPy's bootstrap resamples one axis only, hence this."""
    grid = np.asarray(grid, dtype=float)
    mean = float(grid.mean()) if grid.size else float("nan")
    if grid.size < 2 or np.ptp(grid) == 0:
        return Interval(mean, mean, mean)
    n_cases, n_seeds = grid.shape
    rows = rng.integers(0, n_cases, size=(resamples, n_cases))
    cols = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    # mean of grid[rows_b][:, cols_b] without building it: average the chosen seeds per case
    per_case_seed_mean = grid[:, cols].mean(axis=2).T  # (B, n_cases)
    means = np.take_along_axis(per_case_seed_mean, rows, axis=1).mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(mean, float(low), float(high))


def rank_biserial(differences: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation of paired differences (Kerby, 2014): the share
    of the signed-rank sum that is positive minus the share that is negative, in [-1, 1]; zero
    differences dropped as the Wilcoxon test drops them."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def paired_test(a: np.ndarray, b: np.ndarray, test: str = "wilcoxon",
                alternative: str = "two-sided") -> tuple[float, float]:
    """(statistic, p) of the paired test of ``a`` against ``b``; identical samples give
    (0, 1) (SciPy refuses all-zero differences)."""
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if not np.any(d != 0):
        return 0.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small-sample notes from scipy
        if test == "ttest":
            result = stats.ttest_rel(a, b, alternative=alternative)
        else:
            result = stats.wilcoxon(a, b, alternative=alternative)
    return float(result.statistic), float(result.pvalue)


def adjust(pvalues: list[float], method: str, alpha: float) -> list[float]:
    """Family-wise adjusted p-values (``none`` returns them unchanged)."""
    if method == "none" or not pvalues:
        return list(pvalues)
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(pvalues, alpha=alpha, method=method)[1]]


def pairwise_tests(matrix: pd.DataFrame, baseline: str | None, *, higher_is_better: bool,
                   test: str, correction: str, alpha: float, resamples: int,
                   rng: np.random.Generator) -> pd.DataFrame:
    """Paired tests over cases: each strategy against the baseline (one family) and every pair
    (another family), each family corrected with ``correction``.

    Rows: ``family, a, b, cases, mean_a, mean_b, difference`` (mean of a − b) with its bootstrap
    CI, ``better`` (a is better than b by the metric's direction), ``statistic, p, p_adjusted,
    significant``, and effect sizes ``rank_biserial`` (of a − b) and ``cohen_dz``.
    """
    rows: list[dict[str, Any]] = []
    strategies = list(matrix.columns)
    families = {"pairs": list(combinations(strategies, 2))}
    if baseline is not None and baseline in strategies:
        families = {"baseline": [(s, baseline) for s in strategies if s != baseline],
                    **families}
    for family, pairs in families.items():
        found = []
        for a, b in pairs:
            x, y = matrix[a].to_numpy(float), matrix[b].to_numpy(float)
            d = x - y
            diff = bootstrap_mean(d, resamples, rng)
            statistic, p = paired_test(x, y, test)
            sd = float(d.std(ddof=1)) if d.size > 1 else 0.0
            found.append({
                "family": family, "a": a, "b": b, "cases": int(d.size),
                "mean_a": float(x.mean()), "mean_b": float(y.mean()),
                "difference": diff.estimate, "difference_low": diff.low,
                "difference_high": diff.high,
                "better": bool(diff.estimate > 0) if higher_is_better else bool(diff.estimate < 0),
                "statistic": statistic, "p": p, "rank_biserial": rank_biserial(d),
                "cohen_dz": float(d.mean() / sd) if sd > 0 else 0.0,
            })
        for row, p_adj in zip(found, adjust([r["p"] for r in found], correction, alpha),
                              strict=True):
            row["p_adjusted"] = p_adj
            row["significant"] = bool(p_adj < alpha)
        rows += found
    columns = ["family", "a", "b", "cases", "mean_a", "mean_b", "difference", "difference_low",
               "difference_high", "better", "statistic", "p", "p_adjusted", "significant",
               "rank_biserial", "cohen_dz"]
    return pd.DataFrame(rows, columns=columns)


def mean_ranks(matrix: pd.DataFrame, higher_is_better: bool) -> pd.Series:
    """Each strategy's rank averaged over cases (1 = best; ties share their mean rank)."""
    return matrix.rank(axis=1, ascending=not higher_is_better, method="average").mean()


def critical_difference(strategies: int, cases: int, alpha: float) -> float:
    """Nemenyi's critical difference of mean ranks (Demšar, 2006):
    q_α(k, ∞)/√2 · √(k(k+1)/(6n)), q from SciPy's studentized range."""
    from scipy import stats

    q = stats.studentized_range.ppf(1 - alpha, strategies, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(strategies * (strategies + 1) / (6 * cases)))


@dataclass(frozen=True)
class Friedman:
    """The Friedman test across strategies, with Nemenyi's post-hoc."""

    statistic: float
    p: float
    cases: int
    ranks: dict[str, float]
    nemenyi: pd.DataFrame
    critical_difference: float


def friedman(matrix: pd.DataFrame, *, higher_is_better: bool, alpha: float) -> Friedman | None:
    """Friedman's test on the cases × strategies matrix and Nemenyi's pairwise p-values;
    ``None`` with fewer than three strategies or two cases (the test is undefined)."""
    from scipy import stats

    k, n = matrix.shape[1], matrix.shape[0]
    if k < 3 or n < 2:
        return None
    import scikit_posthocs as sp

    columns = [matrix[c].to_numpy(float) for c in matrix.columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.friedmanchisquare(*columns)
        nemenyi = sp.posthoc_nemenyi_friedman(matrix.to_numpy(float))
    nemenyi.index = nemenyi.columns = list(matrix.columns)
    ranks = mean_ranks(matrix, higher_is_better)
    statistic = float(result.statistic) if np.isfinite(result.statistic) else 0.0
    p = float(result.pvalue) if np.isfinite(result.pvalue) else 1.0
    return Friedman(statistic, p, n, {s: float(r) for s, r in ranks.items()},
                    nemenyi.astype(float).fillna(1.0), critical_difference(k, n, alpha))


@dataclass(frozen=True)
class RankStability:
    """challengeR's bootstrap ranking: how often each strategy takes each rank when the test
    cases are resampled, and how far the resampled rankings agree with the full one."""

    ranking: dict[str, int]
    frequencies: pd.DataFrame  # strategies × ranks (1..k): share of resamples
    first: dict[str, float]
    kendall_tau_median: float


def rank_stability(matrix: pd.DataFrame, *, higher_is_better: bool, resamples: int,
                   rng: np.random.Generator) -> RankStability:
    """Rank the strategies by their mean over cases (1 = best, ties share the lowest rank), on
    the full test set and on ``resamples`` bootstrap resamples of its cases."""
    from scipy import stats

    values = matrix.to_numpy(float)
    sign = -1.0 if higher_is_better else 1.0
    names = list(matrix.columns)
    full = stats.rankdata(sign * values.mean(axis=0), method="min").astype(int)
    picks = rng.integers(0, values.shape[0], size=(resamples, values.shape[0]))
    means = values[picks].mean(axis=1)  # (B, k)
    ranks = stats.rankdata(sign * means, axis=1, method="min").astype(int)
    k = len(names)
    frequencies = pd.DataFrame(
        [[float(np.mean(ranks[:, j] == r)) for r in range(1, k + 1)] for j in range(k)],
        index=names, columns=list(range(1, k + 1)))
    taus = []
    if k > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for row in ranks:
                tau = stats.kendalltau(full, row).statistic
                taus.append(1.0 if np.isnan(tau) else float(tau))
    return RankStability(
        {n: int(r) for n, r in zip(names, full, strict=True)}, frequencies,
        {n: float(frequencies.loc[n, 1]) for n in names},
        float(np.median(taus)) if taus else 1.0)

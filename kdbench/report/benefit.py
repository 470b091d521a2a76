"""Benefit vs N: how a strategy's per-case gain over the baseline changes with the training size,
and N*, the smallest N from which that gain is no longer significantly positive.

Input: one row per (test case, N) with ``gain``, the case's strategy − baseline value averaged
over the seeds where both ran (paired by seed, then by case). Two analyses, both reported:

1. **Trend** — a linear mixed model ``gain ~ 1 + log2(N) + (1 | case)`` (statsmodels
   ``MixedLM``, REML): the slope is the change of the gain per doubling of N, with its Wald 95%
   CI; the random intercept absorbs that some cases are easier than others at every N.
   Assumptions: the mean gain is linear in log N over the studied range, residuals are
   independent and roughly normal, case effects are normal. The model's fitted gain at each N
   has a one-sided lower bound, and ``n_star_model`` is the smallest studied N from which that
   bound is ≤ 0 (it inherits the linearity assumption: a gain that stops abruptly is smeared).
2. **N\\*** — no functional form: at each studied N, a one-sided Wilcoxon signed-rank test of
   the per-case gains (H1: gain > 0, level α); N\\* is the smallest studied N from which no
   larger N shows a significant gain. It is known only up to the grid: the benefit vanishes in
   ``(previous N, N*]``. Its uncertainty is its distribution over bootstrap resamples of the
   test cases (the same cases resampled at every N), reported as the share of resamples giving
   each N\\* and a 95% percentile interval on the grid (resamples repeat cases, so their tests
   use the normal approximation with tie correction). ``N* > max N`` means the gain is still
   significant at the largest N; ``N* = min N`` means no N shows a significant gain.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kdbench.report.statistics import CONFIDENCE, Interval, bootstrap_mean

BEYOND = "beyond"


@dataclass
class Benefit:
    """The benefit-vs-N analysis of one strategy against the baseline."""

    per_n: pd.DataFrame
    slope: Interval | None
    slope_p: float | None
    model_note: str
    n_star: int | None  # None: significant up to the largest N (N* beyond the grid)
    n_star_after: int | None  # the last significant N before N* (None: none)
    n_star_model: int | None
    n_star_shares: dict[str, float] = field(default_factory=dict)
    n_star_interval: tuple[str, str] = ("", "")

    def n_star_label(self) -> str:
        """``(400, 800]``, ``> 1600`` or ``≤ 25``."""
        largest = int(self.per_n["N"].max())
        if self.n_star is None:
            return f"> {largest}"
        if self.n_star_after is None:
            return f"≤ {self.n_star}"
        return f"({self.n_star_after}, {self.n_star}]"


def gain_matrix(gains: pd.DataFrame) -> pd.DataFrame:
    """Cases × N of the gains, keeping the cases present at every N (the trend and the
    bootstrap pair cases across N)."""
    grid = gains.pivot_table(index="case", columns="N", values="gain", aggfunc="mean")
    return grid.dropna(axis=0, how="any").sort_index().sort_index(axis=1)


def n_star(significant: list[bool], sizes: list[int]) -> tuple[int | None, int | None]:
    """(N*, the last significant N before it) from per-N significance in increasing N."""
    last = max((i for i, s in enumerate(significant) if s), default=None)
    if last is None:
        return sizes[0], None
    if last == len(sizes) - 1:
        return None, sizes[last]
    return sizes[last + 1], sizes[last]


def _one_sided_p(grid: np.ndarray, axis: int, method: str = "auto") -> np.ndarray:
    """One-sided Wilcoxon p-values (gain > 0) along ``axis``; all-zero samples give 1."""
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.wilcoxon(grid, axis=axis, alternative="greater", method=method).pvalue
    p = np.asarray(p, dtype=float)
    zero = ~np.any(grid != 0, axis=axis)
    return np.where(zero | np.isnan(p), 1.0, p)


def benefit_vs_n(gains: pd.DataFrame, *, alpha: float, resamples: int,
                 rng: np.random.Generator) -> Benefit:
    """The trend and N* of one strategy's gains (rows ``case, N, gain``)."""
    grid = gain_matrix(gains)
    sizes = [int(n) for n in grid.columns]
    values = grid.to_numpy(float)  # cases × N
    p = _one_sided_p(values, axis=0)
    significant = [bool(x < alpha) for x in p]
    rows = []
    for j, n in enumerate(sizes):
        mean = bootstrap_mean(values[:, j], resamples, rng)
        rows.append({"N": n, "cases": int(values.shape[0]), "gain": mean.estimate,
                     "gain_low": mean.low, "gain_high": mean.high, "p_greater": float(p[j]),
                     "significant": significant[j]})
    per_n = pd.DataFrame(rows)
    star, after = n_star(significant, sizes)

    picks = rng.integers(0, values.shape[0], size=(resamples, values.shape[0]))
    # resamples repeat cases (ties): the normal approximation, as SciPy's exact null needs
    # distinct ranks and its permutation fallback would cost minutes
    boot_p = _one_sided_p(values[picks], axis=1, method="asymptotic")  # (B, N)
    labels = [str(n) for n in sizes] + [BEYOND]
    draws = []
    for row in boot_p:
        s, _ = n_star(list(row < alpha), sizes)
        draws.append(len(sizes) if s is None else sizes.index(s))
    draws_arr = np.asarray(draws)
    shares = {labels[i]: float(np.mean(draws_arr == i)) for i in range(len(labels))}
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(draws_arr, [tail, 100 - tail], method="inverted_cdf")
    interval = (labels[int(low)], labels[int(high)])

    slope, slope_p, note, fitted = _trend(grid, alpha)
    if fitted is not None:
        per_n["fitted"] = fitted[0]
        per_n["fitted_lower"] = fitted[1]
        below = [bool(x <= 0) for x in fitted[1]]
        model_star = next((sizes[i] for i in range(len(sizes)) if all(below[i:])), None)
    else:
        model_star = None
    return Benefit(per_n, slope, slope_p, note, star, after, model_star, shares, interval)


def _trend(grid: pd.DataFrame, alpha: float) -> tuple[Interval | None, float | None, str,
                                                      Any]:
    """The mixed model's slope per doubling of N, its p, a note, and (fitted gain, one-sided
    lower bound) at each N; ``None``s with the reason when it cannot be fitted."""
    from scipy import stats

    if grid.shape[1] < 2:
        return None, None, "one training size: no trend to fit", None
    if grid.shape[0] < 3:
        return None, None, "fewer than 3 cases at every N: no trend fitted", None
    import statsmodels.formula.api as smf

    long = grid.stack().rename("gain").reset_index()
    long["log2_n"] = np.log2(long["N"].astype(float))
    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = smf.mixedlm("gain ~ log2_n", long, groups=long["case"])
            fit = model.fit(reml=True)
        notes += sorted({type(w.message).__name__ for w in caught
                         if "Convergence" in type(w.message).__name__})
    except (np.linalg.LinAlgError, ValueError) as exc:
        return None, None, f"mixed model not fitted: {exc}", None
    names = ["Intercept", "log2_n"]
    beta = fit.fe_params[names].to_numpy(float)
    cov = fit.cov_params().loc[names, names].to_numpy(float)
    if not np.all(np.isfinite(cov)):
        return None, None, "mixed model not fitted: singular covariance", None
    se = float(np.sqrt(cov[1, 1]))
    z = stats.norm.ppf(1 - (1 - CONFIDENCE) / 2)
    slope = Interval(float(beta[1]), float(beta[1] - z * se), float(beta[1] + z * se))
    slope_p = float(2 * stats.norm.sf(abs(beta[1] / se))) if se > 0 else 1.0
    design = np.column_stack([np.ones(grid.shape[1]), np.log2(grid.columns.to_numpy(float))])
    mean = design @ beta
    bound = mean - stats.norm.ppf(1 - alpha) * np.sqrt(
        np.einsum("ij,jk,ik->i", design, cov, design))
    note = "REML, random intercept per case" + (f"; {', '.join(notes)}" if notes else "")
    return slope, slope_p, note, (mean.tolist(), bound.tolist())

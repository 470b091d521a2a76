"""Inference with the training run as the random unit: a strategy's gain over the baseline at
one training size, its variance components, equivalence within a margin, and the N-trend.

A claim about a method at a training size N is a claim over training runs (the subset draw,
the initialisation, the augmentation: one *seed*), and over the test cases. The data of one
comparison (scenario, subset, N, region, metric) is the cases × seeds grid of per-case
*gains* ``d[c, s]``: the strategy's value minus the baseline's on case ``c`` for the models of
seed ``s`` (the same training subset and initialisation for both: paired by seed), oriented so
that a positive gain is an improvement (baseline − strategy for a lower-is-better metric such
as HD95). Its model is the crossed random-effects model

    d[c, s] = μ + r[s] + u[c] + e[c, s],   r ~ N(0, σ²_run), u ~ N(0, σ²_case), e ~ N(0, σ²_res)

(``r``: how the strategy's advantage varies between training runs; ``u``: between test cases,
the strategy × case interaction; a case's difficulty shared by both strategies cancels in the
gain). μ, the mean gain over runs and cases, is estimated by the grid mean, whose variance is
σ²_run/S + σ²_case/C + σ²_res/(SC). The variance components are the ANOVA (method of moments)
estimates of a balanced two-way layout without replication (Searle, Casella & McCulloch,
*Variance Components*, 1992, ch. 4), truncated at zero. The standard error uses the unbiased
combination ``(MS_seed + max(MS_case − MS_res, 0)) / (SC)`` and Student t with S − 1 degrees
of freedom, those of its seed term. (Satterthwaite's df for this difference of mean squares
collapses towards zero when the case term is small, a known failure; S − 1 is the conservative
choice and exact when there is no case × strategy variance, where the test is the paired t
test of the S per-seed mean gains: the seeds are the replicates.) With one seed nothing can be
said about training runs, and with two the test has one degree of freedom
(:data:`FEW_SEEDS`).

Equivalence within a pre-registered margin δ is Schuirmann's two one-sided tests (TOST, 1987):
the gain is shown *faded* when both H0: μ ≤ −δ and H0: μ ≥ δ are rejected at α (the 1 − 2α CI
inside ±δ). A *benefit* is shown when H0: μ ≤ δ is rejected (the gain exceeds the margin).
Otherwise the state is *undetermined*: "no significant difference" is never read as "no
difference".

Everything here is closed-form on small arrays (the simulation tests run thousands of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdbench.report.statistics import CONFIDENCE, Interval

#: Below this many seeds a run-level result is reported with a note that it cannot support a
#: claim, and none is made: no significance mark, no benefit or faded state (one seed: no test
#: at all; two: one degree of freedom, a variance estimated from two runs).
FEW_SEEDS = 3

BENEFIT, FADED, UNDETERMINED = "benefit", "faded", "undetermined"
BEYOND = "beyond"


@dataclass(frozen=True)
class Components:
    """Variance components of the gain (ANOVA estimates, truncated at zero)."""

    run: float
    case: float
    residual: float


@dataclass(frozen=True)
class RunLevel:
    """The run-level estimate of one comparison's mean gain.

    Attributes:
        seeds, cases: the size of the complete grid (seeds and cases present for both).
        gain: the grid mean (positive: the strategy is better).
        se: its standard error; ``df`` its degrees of freedom, seeds − 1 (0: one seed).
        ci: the two-sided ``confidence`` interval (Student t with ``df``).
        p: two-sided p of H0: gain = 0; ``p_greater`` one-sided, H1: gain > 0.
        components: the variance components (``None`` with one seed or one case).
        note: what the seeds can support ("" when there are enough).
    """

    seeds: int
    cases: int
    gain: float
    se: float
    df: float
    ci: Interval
    p: float
    p_greater: float
    components: Components | None
    note: str

    def tost(self, margin: float) -> float:
        """Schuirmann's TOST p of H1: −margin < gain < margin (1 when it cannot be tested)."""
        from scipy import stats

        if self.df <= 0 or not np.isfinite(self.se):
            return 1.0
        if self.se == 0:
            return 0.0 if abs(self.gain) < margin else 1.0
        lower = stats.t.sf((self.gain + margin) / self.se, self.df)  # H0: gain <= -margin
        upper = stats.t.cdf((self.gain - margin) / self.se, self.df)  # H0: gain >= margin
        return float(max(lower, upper))

    def p_above(self, margin: float) -> float:
        """One-sided p of H1: gain > margin (1 when it cannot be tested)."""
        from scipy import stats

        if self.df <= 0 or not np.isfinite(self.se):
            return 1.0
        if self.se == 0:
            return 0.0 if self.gain > margin else 1.0
        return float(stats.t.sf((self.gain - margin) / self.se, self.df))

    def p_below(self, bound: float) -> float:
        """One-sided p of H1: gain < bound (1 when it cannot be tested)."""
        from scipy import stats

        if self.df <= 0 or not np.isfinite(self.se):
            return 1.0
        if self.se == 0:
            return 0.0 if self.gain < bound else 1.0
        return float(stats.t.cdf((self.gain - bound) / self.se, self.df))

    @property
    def enough_seeds(self) -> bool:
        """Whether there are seeds enough (:data:`FEW_SEEDS`) for the result to support a
        claim; with fewer the report states nothing (no mark, no state) and says why."""
        return self.seeds >= FEW_SEEDS

    def state(self, margin: float, alpha: float) -> str:
        """``benefit`` (gain > margin shown), ``faded`` (|gain| < margin shown) or
        ``undetermined``, each test at level ``alpha``; always ``undetermined`` with fewer
        than :data:`FEW_SEEDS` seeds."""
        if not self.enough_seeds:
            return UNDETERMINED
        if self.p_above(margin) < alpha:
            return BENEFIT
        if self.tost(margin) < alpha:
            return FADED
        return UNDETERMINED


def gain_grid(per_case: pd.DataFrame, strategy: str, baseline: str, *,
              higher_is_better: bool = True) -> pd.DataFrame:
    """Cases × seeds of the strategy's gain over the baseline, paired by seed and case; only
    the seeds both ran and the cases every such seed has (a complete, balanced grid).

    Args:
        per_case: tidy rows of one comparison: ``strategy, seed, case, value``.
    """
    mine = per_case[per_case["strategy"] == strategy]
    base = per_case[per_case["strategy"] == baseline]
    both = mine.merge(base, on=["seed", "case"], suffixes=("", "_base"))
    sign = 1.0 if higher_is_better else -1.0
    both = both.assign(gain=sign * (both["value"] - both["value_base"]))
    both = both[np.isfinite(both["gain"])]  # a non-finite value drops its case from the grid
    grid = both.pivot_table(index="case", columns="seed", values="gain", aggfunc="mean")
    return grid.dropna(axis=0, how="any").sort_index().sort_index(axis=1)


def components(grid: np.ndarray) -> tuple[Components, tuple[float, float, float]]:
    """The variance components of a cases × seeds grid and its mean squares (seed, case,
    residual) from the two-way ANOVA without replication."""
    grid = np.asarray(grid, dtype=float)
    cases, seeds = grid.shape
    mean = grid.mean()
    seed_means, case_means = grid.mean(axis=0), grid.mean(axis=1)
    ms_seed = cases * float(np.sum((seed_means - mean) ** 2)) / (seeds - 1)
    ms_case = seeds * float(np.sum((case_means - mean) ** 2)) / (cases - 1)
    residual = grid - seed_means[None, :] - case_means[:, None] + mean
    ms_res = float(np.sum(residual**2)) / ((seeds - 1) * (cases - 1))
    found = Components(run=max((ms_seed - ms_res) / cases, 0.0),
                       case=max((ms_case - ms_res) / seeds, 0.0), residual=ms_res)
    return found, (ms_seed, ms_case, ms_res)


def run_level(grid: np.ndarray | pd.DataFrame, confidence: float = CONFIDENCE) -> RunLevel:
    """The mean gain of a cases × seeds grid with its run-level standard error, CI and p."""
    from scipy import stats

    values = np.asarray(grid, dtype=float)
    cases, seeds = values.shape if values.ndim == 2 else (0, 0)
    if values.size == 0:
        nan = float("nan")
        return RunLevel(seeds, cases, nan, nan, 0.0, Interval(nan, nan, nan), 1.0, 1.0, None,
                        "no case and seed in common with the baseline")
    gain = float(values.mean())
    if seeds < 2:
        return RunLevel(seeds, cases, gain, float("inf"), 0.0,
                        Interval(gain, -float("inf"), float("inf")), 1.0, 1.0, None,
                        "one seed: training-run variation unknown, no run-level test")
    if cases < 2:  # the paired t test of the seeds' values
        found = None
        variance, df = float(np.var(values[0], ddof=1)) / seeds, float(seeds - 1)
    else:
        found, (ms_seed, ms_case, ms_res) = components(values)
        variance = (ms_seed + max(ms_case - ms_res, 0.0)) / (seeds * cases)
        df = float(seeds - 1)
    se = float(np.sqrt(variance))
    note = ""
    if seeds < FEW_SEEDS:
        note = (f"{seeds} seeds: a run-level test with {seeds - 1} degree of freedom cannot "
                f"support a claim (none is made below {FEW_SEEDS} seeds); add seeds")
    if se == 0:
        return RunLevel(seeds, cases, gain, 0.0, df, Interval(gain, gain, gain),
                        1.0 if gain == 0 else 0.0, 1.0 if gain <= 0 else 0.0, found, note)
    t = gain / se
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, df)) * se
    return RunLevel(seeds, cases, gain, se, df, Interval(gain, gain - half, gain + half),
                    float(2 * stats.t.sf(abs(t), df)), float(stats.t.sf(t, df)), found, note)


def fixed_sequence(pvalues: Sequence[float]) -> list[float]:
    """Adjusted p-values of hypotheses tested in a pre-registered order, each only if every
    earlier one was rejected (Maurer, Hothorn & Lehmacher 1995): ``max(p_1, ..., p_k)``.
    Rejecting where the adjusted p is below α controls the family-wise error at α."""
    out, worst = [], 0.0
    for p in pvalues:
        worst = max(worst, float(p))
        out.append(worst)
    return out


def n_star(states: Sequence[str], sizes: Sequence[int]) -> int | str:
    """N*_δ: the smallest grid N from which the gain is shown faded at every larger N.

    An intersection-union test (Berger 1982): "faded at every N ≥ N*" is claimed only when each
    of those equivalence tests rejects at α, which holds the error of the claim at α without a
    multiplicity correction. Returns a grid N, or :data:`BEYOND` when the gain is not shown
    faded at the largest N (sizes increasing; N* = the smallest N means faded everywhere).
    """
    star: int | str = BEYOND
    for n, state in zip(reversed(sizes), reversed(states), strict=True):
        if state != FADED:
            break
        star = int(n)
    return star


def n_star_label(star: int | str, sizes: Sequence[int]) -> str:
    """``200``, ``beyond`` (not faded at the largest N) or ``<=25`` (faded at every N)."""
    if star == BEYOND:
        return BEYOND
    return f"<={star}" if int(star) == min(sizes) else str(star)


@dataclass(frozen=True)
class Trend:
    """The gain's change per doubling of N, from the run-level means."""

    slope: Interval
    p: float
    runs: int
    note: str


def trend(grids: dict[int, np.ndarray], confidence: float = CONFIDENCE) -> Trend | None:
    """Least squares of the runs' mean gains on log2 N (one point per (N, seed)).

    This is the linear mixed model ``gain ~ log2 N + (1 | run)`` of the per-case gains reduced
    to run means, exact for a balanced grid: the run random effect makes the runs, not the
    cases, the replicates of the slope. A case effect shared by every N moves the intercept
    only. The CI is Student t with runs − 2 degrees of freedom. ``None`` with fewer than two
    sizes or three runs.
    """
    from scipy import stats

    xs, ys = [], []
    for n, grid in sorted(grids.items()):
        values = np.asarray(grid, dtype=float)
        if values.size:
            means = values.mean(axis=0)
            xs += [np.log2(float(n))] * len(means)
            ys += list(means)
    x, y = np.asarray(xs), np.asarray(ys)
    if len(set(xs)) < 2 or x.size < 3:
        return None
    xc = x - x.mean()
    slope = float(np.sum(xc * (y - y.mean())) / np.sum(xc**2))
    residual = y - y.mean() - slope * xc
    df = x.size - 2
    se = float(np.sqrt(np.sum(residual**2) / df / np.sum(xc**2)))
    if se == 0:
        return Trend(Interval(slope, slope, slope), 1.0 if slope == 0 else 0.0, x.size, "")
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, df)) * se
    return Trend(Interval(slope, slope - half, slope + half),
                 float(2 * stats.t.sf(abs(slope / se), df)), int(x.size),
                 f"least squares on {x.size} run means, t with {df} df")


def bootstrap_n_star(grids: dict[int, np.ndarray], margin: float, alpha: float,
                     resamples: int, rng: np.random.Generator
                     ) -> tuple[dict[str, float], tuple[str, str]]:
    """The distribution of N*_δ over two-stage bootstrap resamples: the test cases resampled
    once per resample (the same cases at every N) and, at each N, its seeds resampled (each
    (N, seed) is a run of its own). Returns each label's share and the 95% interval on the
    grid (labels as :func:`n_star_label`). Every grid holds the same cases in the same row
    order."""
    sizes = sorted(grids)
    rows_per_n = {np.asarray(g).shape[0] for g in grids.values()}
    if len(rows_per_n) != 1:
        raise ValueError(f"the grids must hold the same cases in the same order at every N, "
                         f"got {sorted(rows_per_n)} rows")
    cases = rows_per_n.pop()
    labels = [n_star_label(n, sizes) for n in sizes] + [BEYOND]
    draws = np.empty(resamples, dtype=int)
    for b in range(resamples):
        rows = rng.integers(0, cases, size=cases)
        states = []
        for n in sizes:
            grid = np.asarray(grids[n], dtype=float)
            cols = rng.integers(0, grid.shape[1], size=grid.shape[1])
            states.append(run_level(grid[np.ix_(rows, cols)]).state(margin, alpha))
        star = n_star(states, sizes)
        draws[b] = len(sizes) if star == BEYOND else sizes.index(int(star))
    shares = {labels[i]: float(np.mean(draws == i)) for i in range(len(labels))}
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail], method="inverted_cdf")
    return shares, (labels[int(low)], labels[int(high)])

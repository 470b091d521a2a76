"""Benefit vs N: how a strategy's gain over the baseline changes with the training size, and
N*_δ, the smallest N from which the gain is *shown* to have faded within a pre-registered
margin δ at every larger N.

Input: per N, the cases × seeds grid of the strategy's gain over the baseline (paired by seed
and case, oriented so that positive is better: :func:`kdbench.report.run_level.gain_grid`).
Every statistic treats the training runs (seeds) as the replicates
(:mod:`kdbench.report.run_level`):

1. **Per N** — the mean gain with its run-level 95% CI (crossed case and run variance
   components, Student t with seeds − 1 df) and, with a margin δ, a state: *benefit* (gain > δ
   shown, one-sided t at α), *faded* (|gain| < δ shown, TOST at α) or *undetermined*.
2. **N\\*_δ** — the smallest grid N from which every larger N is *faded* (an intersection-union
   test: no multiplicity correction is needed for that claim). ``beyond`` when the largest N is
   not shown faded (the benefit may persist, or the data cannot tell); ``<=Nmin`` when every N
   is. Its uncertainty: the share of two-stage bootstrap resamples (test cases resampled once
   for every N, then each N's seeds) giving each N\\*_δ, and a 95% interval on the grid.
   Without a margin no state and no N\\* are computed: absence of a significant gain is never
   read as a faded one.
3. **Trend** — the gain's change per doubling of N, least squares on the run means (the mixed
   model ``gain ~ log2 N + (1 | run)`` for a balanced grid), Student t CI with runs − 2 df.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kdbench.report.run_level import (
    BEYOND,
    FEW_SEEDS,
    Trend,
    bootstrap_n_star,
    n_star,
    n_star_label,
    run_level,
    trend,
)


@dataclass
class Benefit:
    """The benefit-vs-N analysis of one strategy against the baseline on one metric.

    Attributes:
        per_n: one row per N: ``N, seeds, cases, gain, gain_low, gain_high, se, df, p`` and,
            with a margin, ``p_benefit`` (H1: gain > δ), ``p_tost`` (H1: |gain| < δ) and
            ``state``; ``note`` says what too few seeds cannot support.
        margin: δ in the metric's units (``None``: not pre-registered).
        n_star: a grid N, :data:`BEYOND`, or ``None`` without a margin.
        n_star_shares: bootstrap share of each N*_δ label; ``n_star_interval`` its 95% range.
        trend: the slope per doubling of N (``None`` with one N or too few runs:
            :attr:`trend_note` says which).
        curve: the gain as the difference of two fitted learning curves, with where it enters
            the margin (:mod:`kdbench.report.curves`).
    """

    per_n: pd.DataFrame
    margin: float | None
    n_star: int | str | None
    trend: Trend | None
    n_star_shares: dict[str, float] = field(default_factory=dict)
    n_star_interval: tuple[str, str] = ("", "")
    curve: Any = None  # the fitted gain curve (kdbench.report.curves.GainCurve)

    @property
    def trend_note(self) -> str:
        """How the trend was fitted, or why it was not."""
        if self.trend is not None:
            return self.trend.note
        if self.per_n["N"].nunique() < 2:
            return "one training size: no trend to fit"
        return "fewer than 3 runs: no trend fitted"

    def n_star_label(self) -> str:
        """``200``, ``beyond``, ``<=25``, or ``no margin``."""
        if self.n_star is None:
            return "no margin"
        return n_star_label(self.n_star, [int(n) for n in self.per_n["N"]])


def common_cases(grids: dict[int, pd.DataFrame]) -> dict[int, pd.DataFrame]:
    """The grids restricted to the cases present at every N, in one row order (the bootstrap
    resamples the same test cases at every N)."""
    shared = sorted(set.intersection(*(set(g.index) for g in grids.values())))
    return {n: g.loc[shared] for n, g in sorted(grids.items())}


def benefit_vs_n(grids: dict[int, pd.DataFrame], *, margin: float | None, alpha: float,
                 resamples: int, rng: np.random.Generator) -> Benefit:
    """The per-N gains, states, N*_δ and trend of one strategy (grids: N -> cases × seeds)."""
    grids = common_cases(grids)
    sizes = sorted(grids)
    rows, states = [], []
    for n in sizes:
        result = run_level(grids[n].to_numpy(float))
        row = {"N": n, "seeds": result.seeds, "cases": result.cases, "gain": result.gain,
               "gain_low": result.ci.low, "gain_high": result.ci.high, "se": result.se,
               "df": result.df, "p": result.p, "note": result.note}
        if margin is not None:
            state = result.state(margin, alpha)
            row.update(p_benefit=result.p_above(margin), p_tost=result.tost(margin),
                       state=state)
            states.append(state)
        rows.append(row)
    per_n = pd.DataFrame(rows)
    arrays = {n: g.to_numpy(float) for n, g in grids.items()}
    slope = trend(arrays)
    if margin is None or not sizes or not len(next(iter(grids.values()))):
        return Benefit(per_n, margin, None, slope)
    star = n_star(states, sizes)
    if all(grids[n].shape[1] < FEW_SEEDS for n in sizes):
        # too few seeds anywhere: every state is undetermined in every resample too
        label = n_star_label(star, sizes)
        return Benefit(per_n, margin, star, slope, {label: 1.0}, (label, label))
    shares, interval = bootstrap_n_star(arrays, margin, alpha, resamples, rng)
    return Benefit(per_n, margin, star, slope, shares, interval)


__all__ = ["BEYOND", "Benefit", "benefit_vs_n", "common_cases"]

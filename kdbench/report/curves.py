"""Learning curves as models: per strategy, ``metric(N) = a + b·N^(−c)`` (the power law with
an asymptote, Viering & Loog, TPAMI 2022) fitted to the runs' means, the gain over the baseline
as the difference of the two curves, and the N where the gain enters the margin δ, each with a
two-stage bootstrap interval (test cases resampled once, then each N's seeds; the curves
refitted on every resample).

The fit uses one point per training run ((N, seed): its mean over the test cases), so the runs
are the replicates, as in :mod:`kdbench.report.run_level`. Three parameters need at least
:data:`MIN_SIZES` training sizes; with fewer nothing is fitted and the reason is given. Beyond
the largest N the curves are extrapolations, drawn and labelled as such: a crossing found there
is a property of the assumed curve, not a measurement (BraTS's grid ends at the pool,
N = 1000, so "fades above 1000" can only ever be read off an extrapolation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdbench.report.statistics import CONFIDENCE

MIN_SIZES = 4
#: The curves are evaluated up to this multiple of the largest N (extrapolated beyond it).
EXTRAPOLATE = 10.0
#: Bootstrap resamples of a curve fit (each refits two curves): at most this many.
MAX_RESAMPLES = 200


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """``a + b·n^(−c)`` (``n`` in units of the smallest training size)."""
    return a + b * np.power(n, -c)


def _linear_part(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of ``z`` (``x^-c`` at one c): least-squares (a, b) of ``y ≈ a + b z`` and
    the sum of squared residuals."""
    zc = z - z.mean(axis=-1, keepdims=True)
    yc = y - y.mean()
    denominator = np.sum(zc**2, axis=-1)
    b = np.divide(zc @ yc, denominator, out=np.zeros_like(denominator),
                  where=denominator > 0)
    a = y.mean() - b * z.mean(axis=-1)
    sse = np.sum((y - a[..., None] - b[..., None] * z) ** 2, axis=-1)
    return a, b, sse


def fit_curve(sizes: np.ndarray, values: np.ndarray) -> tuple[float, float, float] | None:
    """Least-squares ``(a, b, c)`` of :func:`power_law` on points ``(sizes, values)`` (sizes
    scaled by their minimum), ``c`` in [0.01, 3].

    For a fixed c the model is linear in (a, b), so the fit profiles c (variable projection,
    Golub & Pereyra 1973): a grid of c, then a bounded scalar search around the best; no
    starting values, no convergence failures. ``None`` when the sizes do not vary.
    """
    from scipy.optimize import minimize_scalar

    x = np.asarray(sizes, dtype=float) / float(np.min(sizes))
    y = np.asarray(values, dtype=float)
    if np.ptp(x) == 0 or not np.all(np.isfinite(y)):
        return None
    grid = np.linspace(0.01, 3.0, 120)
    _, _, sse = _linear_part(np.power(x[None, :], -grid[:, None]), y)
    best = int(np.argmin(sse))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]

    def profile(c: float) -> float:
        return float(_linear_part(np.power(x, -c)[None, :], y)[2][0])

    c = float(minimize_scalar(profile, bounds=(low, high), method="bounded",
                              options={"xatol": 1e-6}).x)
    a, b, _ = _linear_part(np.power(x, -c)[None, :], y)
    return float(a[0]), float(b[0]), c


@dataclass
class GainCurve:
    """The fitted gain over the baseline and where it enters the margin.

    Attributes:
        curve: rows ``N, gain, low, high, extrapolated`` on a log grid from the smallest N to
            :data:`EXTRAPOLATE` × the largest (gain positive = better).
        crossing: the smallest N where the fitted gain is at most δ (``None``: not within the
            drawn range, or no margin); ``crossing_low/high`` its bootstrap 95% interval
            (``inf``: beyond the drawn range); ``crossing_extrapolated``: beyond the largest N.
        note: how it was fitted, or why not.
    """

    curve: pd.DataFrame
    crossing: float | None
    crossing_low: float | None
    crossing_high: float | None
    crossing_extrapolated: bool
    largest: int
    note: str


def _run_means(grid: dict[int, tuple[np.ndarray, np.ndarray]], rows: np.ndarray | None,
               cols: dict[int, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N per run, strategy's run means, baseline's run means), cases and seeds resampled
    by ``rows`` and ``cols`` (``None``: as they are)."""
    ns, mine, base = [], [], []
    for n, (a, b) in sorted(grid.items()):
        pick_rows = slice(None) if rows is None else rows
        pick_cols = slice(None) if cols is None else cols[n]
        ns += [n] * (a.shape[1] if cols is None else len(cols[n]))
        mine += list(a[pick_rows][:, pick_cols].mean(axis=0))
        base += list(b[pick_rows][:, pick_cols].mean(axis=0))
    return np.asarray(ns, dtype=float), np.asarray(mine), np.asarray(base)


def _gain_on(points: np.ndarray, ns: np.ndarray, mine: np.ndarray, base: np.ndarray,
             sign: float) -> np.ndarray | None:
    first, second = fit_curve(ns, mine), fit_curve(ns, base)
    if first is None or second is None:
        return None
    x = points / ns.min()
    return sign * (power_law(x, *first) - power_law(x, *second))


def _crossing(points: np.ndarray, gain: np.ndarray, margin: float) -> float:
    inside = np.nonzero(gain <= margin)[0]
    return float(points[inside[0]]) if inside.size else float("inf")


def gain_curve(grid: dict[int, tuple[np.ndarray, np.ndarray]], *, higher_is_better: bool,
               margin: float | None, resamples: int, rng: np.random.Generator) -> GainCurve:
    """The fitted gain curve of a strategy over the baseline.

    Args:
        grid: N -> (strategy's, baseline's) cases × seeds values, the same cases in the same
            row order at every N and the same seeds in both (paired by seed).
    """
    sizes = sorted(grid)
    largest = int(sizes[-1]) if sizes else 0
    empty = pd.DataFrame(columns=["N", "gain", "low", "high", "extrapolated"])
    if len(sizes) < MIN_SIZES:
        return GainCurve(empty, None, None, None, False, largest,
                         f"{len(sizes)} training sizes: a learning curve of three parameters "
                         f"needs at least {MIN_SIZES}")
    sign = 1.0 if higher_is_better else -1.0
    points = np.geomspace(sizes[0], sizes[-1] * EXTRAPOLATE, 120)
    ns, mine, base = _run_means(grid, None, None)
    gain = _gain_on(points, ns, mine, base, sign)
    if gain is None:
        return GainCurve(empty, None, None, None, False, largest,
                         "the power law did not converge")
    cases = next(iter(grid.values()))[0].shape[0]
    draws, crossings = [], []
    for _ in range(min(resamples, MAX_RESAMPLES)):
        rows = rng.integers(0, cases, size=cases)
        cols = {n: rng.integers(0, a.shape[1], size=a.shape[1]) for n, (a, _) in grid.items()}
        again = _gain_on(points, *_run_means(grid, rows, cols), sign)
        if again is not None:
            draws.append(again)
            if margin is not None:
                crossings.append(_crossing(points, again, margin))
    tail = (1 - CONFIDENCE) / 2 * 100
    band = np.percentile(np.asarray(draws), [tail, 100 - tail], axis=0) if draws else \
        np.full((2, points.size), np.nan)
    curve = pd.DataFrame({"N": points, "gain": gain, "low": band[0], "high": band[1],
                          "extrapolated": points > sizes[-1]})
    note = (f"a + b·N^(−c) per strategy on {int(ns.size)} run means; band: {len(draws)} "
            f"two-stage bootstrap refits; beyond N = {largest}: extrapolated")
    if margin is None:
        return GainCurve(curve, None, None, None, False, largest, note)
    found = _crossing(points, gain, margin)
    low, high = (np.percentile(crossings, [tail, 100 - tail], method="inverted_cdf")
                 if crossings else (np.inf, np.inf))
    crossing = None if not np.isfinite(found) else found
    return GainCurve(curve, crossing, float(low), float(high),
                     crossing is not None and crossing > largest, largest, note)


def paired_grids(per_case: pd.DataFrame, strategy: str, baseline: str
                 ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """N -> (strategy's, baseline's) cases × seeds values of one (scenario, subset, region,
    metric): at each N the seeds both have, and the cases present for both at every such seed
    and at every N, in one row order (non-finite values drop their case)."""
    frame = per_case[per_case["strategy"].isin([strategy, baseline])
                     & np.isfinite(per_case["value"])]
    wide = frame.pivot_table(index=["N", "case"], columns=["strategy", "seed"],
                             values="value", aggfunc="mean")
    grids: dict[int, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for n in sorted(frame["N"].unique()):
        part = wide.loc[n]
        if strategy not in part.columns.get_level_values(0) or \
                baseline not in part.columns.get_level_values(0):
            continue
        a, b = part[strategy].dropna(axis=1, how="all"), part[baseline].dropna(axis=1, how="all")
        seeds = sorted(set(a.columns) & set(b.columns))
        if not seeds:
            continue
        both = pd.concat([a[seeds], b[seeds]], axis=1, keys=["a", "b"]).dropna(how="any")
        grids[int(n)] = (both["a"], both["b"])
    if not grids:
        return {}
    shared = sorted(set.intersection(*(set(a.index) for a, _ in grids.values())))
    return {n: (a.loc[shared].to_numpy(float), b.loc[shared].to_numpy(float))
            for n, (a, b) in grids.items() if shared}

"""Power planning from a pilot: what gain a protocol as written can detect at each N, and the
seeds and test cases it would need to detect the pre-registered margin δ.

The pilot is a report folder or a per-case table. From it, per pilot N, the variance
components of the primary endpoint's gain (run, case, residual:
:func:`kdbench.report.run_level.components`). The planned protocol's N need not be the
pilot's: the case and residual components are pooled over the pilot's N (the test set does not
change with N); the run component is interpolated linearly in log N between the pilot's N and,
outside them, held at the nearest pilot N's value (no trend is extrapolated: the run variance
usually shrinks as training subsets grow, so above the pilot this errs towards more seeds);
those N are flagged.

At S seeds and C test cases the run-level test of :mod:`~kdbench.report.run_level` has
variance ``σ²_run/S + σ²_case/C + σ²_res/(SC)`` and Student t with S − 1 df. Its power at a
true gain μ is that of the noncentral t with noncentrality μ/se (``scipy.stats.nct``):

- *detectable gain*: the smallest μ the two-sided test at α finds with probability 80%;
- *seeds for δ*: the fewest seeds (at the protocol's test cases) whose detectable gain is ≤ δ;
- *cases for δ*: the fewest test cases (at the protocol's seeds); none when the run variance
  alone keeps it above δ (more test cases cannot replace training runs);
- *seeds to show faded*: the fewest seeds for which two one-sided tests at α show a true gain
  of 0 within ±δ with probability 80%.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdbench.errors import KdbenchError
from kdbench.report.run_level import FEW_SEEDS, Components, components, gain_grid

POWER = 0.8
MAX_SEEDS = 200
MAX_CASES = 100_000


@dataclass(frozen=True)
class Pilot:
    """The variance components of one endpoint's gain, per pilot N."""

    per_n: dict[int, Components]
    seeds: dict[int, int]
    source: str
    endpoint: str

    def at(self, n: int) -> tuple[Components, bool]:
        """The components at training size ``n`` and whether ``n`` is outside the pilot's
        range (where the run component is held at the nearest pilot N's: no trend is
        extrapolated)."""
        sizes = sorted(self.per_n)
        case = float(np.mean([c.case for c in self.per_n.values()]))
        residual = float(np.mean([c.residual for c in self.per_n.values()]))
        runs = np.asarray([self.per_n[m].run for m in sizes])
        # between pilot N: linear in log N; outside: the nearest pilot N's value
        run = float(np.interp(np.log(n), np.log(np.asarray(sizes, dtype=float)), runs))
        return Components(run, case, residual), not (sizes[0] <= n <= sizes[-1])


def variance(parts: Components, seeds: int, cases: int) -> float:
    """The variance of the mean gain at ``seeds`` and ``cases``."""
    return parts.run / seeds + parts.case / cases + parts.residual / (seeds * cases)


def power(gain: float, parts: Components, seeds: int, cases: int, alpha: float) -> float:
    """Power of the two-sided run-level t test at a true ``gain``."""
    from scipy import stats

    if seeds < 2:
        return 0.0
    se = np.sqrt(variance(parts, seeds, cases))
    if se == 0:
        return 1.0 if gain != 0 else alpha
    df = seeds - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    shift = gain / se
    return float(stats.nct.sf(crit, df, shift) + stats.nct.cdf(-crit, df, shift))


def detectable(parts: Components, seeds: int, cases: int, alpha: float,
               target: float = POWER) -> float:
    """The smallest true gain the test detects with probability ``target``."""
    from scipy.optimize import brentq

    if seeds < 2:
        return float("inf")
    se = np.sqrt(variance(parts, seeds, cases))
    if se == 0:
        return 0.0
    high = se
    while power(high, parts, seeds, cases, alpha) < target:
        high *= 2
    return float(brentq(lambda g: power(g, parts, seeds, cases, alpha) - target, 0.0, high,
                        xtol=se * 1e-6))


def tost_power(margin: float, parts: Components, seeds: int, cases: int, alpha: float) -> float:
    """Probability that two one-sided tests at α show a true gain of 0 within ±``margin``."""
    from scipy import stats

    if seeds < 2:
        return 0.0
    se = np.sqrt(variance(parts, seeds, cases))
    if se == 0:
        return 1.0
    df = seeds - 1
    crit = stats.t.ppf(1 - alpha, df)
    # both rejected when |mean| < margin - crit * se; approximated with the se taken as known
    # and the mean / se as Student t with the test's df (slightly conservative)
    bound = margin / se - crit
    return float(max(0.0, 2 * stats.t.cdf(bound, df) - 1))


def seeds_for(margin: float, parts: Components, cases: int, alpha: float, *,
              faded: bool = False) -> int | None:
    """The fewest seeds (at least :data:`FEW_SEEDS`) to detect ``margin`` (or, with ``faded``,
    to show a zero gain within ±margin) with 80% power; ``None`` beyond :data:`MAX_SEEDS`."""
    for seeds in range(FEW_SEEDS, MAX_SEEDS + 1):
        if faded:
            if tost_power(margin, parts, seeds, cases, alpha) >= POWER:
                return seeds
        elif detectable(parts, seeds, cases, alpha) <= margin:
            return seeds
    return None


def cases_for(margin: float, parts: Components, seeds: int, alpha: float) -> int | None:
    """The fewest test cases to detect ``margin`` with 80% power at ``seeds``; ``None`` when
    even :data:`MAX_CASES` cannot (the run variance alone is too large)."""
    if seeds < 2 or detectable(parts, seeds, MAX_CASES, alpha) > margin:
        return None
    low, high = 2, MAX_CASES
    while low < high:
        middle = (low + high) // 2
        if detectable(parts, seeds, middle, alpha) <= margin:
            high = middle
        else:
            low = middle + 1
    return low


def read_pilot(path: Path, *, strategy: str, baseline: str, region: str, metric: str,
               scenario: str | None, higher_is_better: bool) -> Pilot:
    """The pilot's variance components of ``strategy`` − ``baseline`` on ``region`` and
    ``metric`` (``scenario``'s first subset when the pilot has it, else its first scenario).

    ``path``: a report folder (its ``per_case.csv``) or a per-case table.

    Raises:
        KdbenchError: no table there, or no grid of two seeds and two cases for the endpoint.
    """
    from kdbench.report.inputs import read_per_case

    path = Path(path)
    table_path = path / "per_case.csv" if path.is_dir() else path
    if path.is_dir() and not table_path.is_file():
        raise KdbenchError(f"--pilot {path}: a folder without per_case.csv; give a report "
                           "folder or a per-case table")
    table = read_per_case(table_path)
    scenarios = list(dict.fromkeys(table["scenario"]))
    chosen = scenario if scenario in scenarios else scenarios[0]
    rows = table[(table["scenario"] == chosen) & (table["region"] == region)
                 & (table["metric"] == metric)]
    subset = sorted(set(rows["subset"]))[0] if not rows.empty else None
    rows = rows[rows["subset"] == subset]
    per_n: dict[int, Components] = {}
    seeds: dict[int, int] = {}
    for n, part in rows.groupby("N"):
        grid = gain_grid(part, strategy, baseline, higher_is_better=higher_is_better)
        if grid.shape[0] >= 2 and grid.shape[1] >= 2:
            per_n[int(n)], _ = components(grid.to_numpy(float))
            seeds[int(n)] = int(grid.shape[1])
    if not per_n:
        raise KdbenchError(
            f"--pilot {table_path}: no N with two seeds and two cases of {strategy} and "
            f"{baseline} on {region} {metric} ({chosen}); the pilot must run the endpoint's "
            "strategy and baseline with at least two seeds")
    return Pilot(per_n, seeds, str(table_path),
                 f"{strategy} − {baseline}, {region} {metric}, {chosen}/{subset}")


def plan_power(pilot: Pilot, sizes: list[int], seeds: int | dict[int, int], cases: int,
               alpha: float, margin: float | None,
               hours_per_seed: dict[int, float] | None = None) -> pd.DataFrame:
    """One row per planned N: the components used, the detectable gain at the protocol's
    seeds (one count, or N -> count) and cases, and (with a margin) the seeds and cases needed
    for it."""
    rows: list[dict[str, Any]] = []
    for n in sizes:
        k = seeds[n] if isinstance(seeds, dict) else seeds
        parts, outside = pilot.at(n)
        row: dict[str, Any] = {
            "N": n, "seeds": k, "cases": cases, "sd_run": parts.run ** 0.5,
            "sd_case": parts.case ** 0.5, "sd_residual": parts.residual ** 0.5,
            "extrapolated": outside,
            "detectable": detectable(parts, k, cases, alpha)}
        if margin is not None:
            needed = seeds_for(margin, parts, cases, alpha)
            row.update(delta=margin, seeds_for_delta=needed,
                       cases_for_delta=cases_for(margin, parts, k, alpha),
                       seeds_to_show_faded=seeds_for(margin, parts, cases, alpha, faded=True))
            if hours_per_seed and n in hours_per_seed and needed is not None:
                row["gpu_h_for_delta"] = needed * hours_per_seed[n]
        rows.append(row)
    return pd.DataFrame(rows)

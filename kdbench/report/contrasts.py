"""Pre-registered contrasts of a strategy against its control (``statistics.contrasts``).

A distilled student's gain over ``mono`` mixes what the teacher's extra modalities know with
what any soft target does. Each contrast isolates one part by comparing two strategies that
differ in one respect only: ``kd`` against ``kd`` with a ``mono`` teacher (born-again: the
*privileged-modality effect*), against ``label_smoothing`` (a soft target without a teacher),
against ``kd`` with a fixed-size teacher. The statistics are those of the gains over the
baseline (:mod:`kdbench.report.run_level`): per (scenario, subset, N, region, metric) the cases ×
seeds grid of ``strategy − control`` differences, paired by seed and case, its mean with the
run-level 95% CI (Student t, seeds − 1 df), p, and its state against the pre-registered margin
δ of the metric (*above δ* or *below −δ* by one-sided t tests, *within ±δ* by two one-sided
tests, or *undetermined*), which is
given only from :data:`~kdbench.report.run_level.FEW_SEEDS` seeds. Contrasts are few and each
is one pre-registered question: they are not corrected for multiplicity, and say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from kdbench.report.run_level import BENEFIT, FADED, gain_grid, run_level

GROUP = ["scenario", "subset", "N", "region", "metric"]
CONTRAST_COLUMNS = ["contrast", "strategy", "control", *GROUP, "seeds", "cases", "difference",
                    "ci_low", "ci_high", "se", "df", "p", "delta", "state", "note"]
#: How a contrast's state reads (a contrast has no "benefit": its effect is above the margin).
STATES = {BENEFIT: "above δ", FADED: "within ±δ"}


def contrast_table(per_case: pd.DataFrame, contrasts: Sequence[Any], *,
                   higher_is_better: dict[str, bool], margin: dict[str, float],
                   alpha: float) -> pd.DataFrame:
    """One row per contrast and comparison where both strategies have results.

    Args:
        per_case: the tidy per-case table (``scenario, subset, N, region, metric, strategy,
            seed, case, value``).
        contrasts: objects with ``name, strategy, control`` (:class:`ContrastSpec`).
        higher_is_better: metric -> direction (a difference is oriented as the metric: the
            strategy's value minus the control's; ``state`` uses the improvement).
        margin: metric -> δ.
        alpha: the level of the state's tests.
    """
    rows = []
    for contrast in contrasts:
        pair = per_case[per_case["strategy"].isin([contrast.strategy, contrast.control])]
        for raw, group in pair.groupby(GROUP, sort=True):
            if set(group["strategy"]) != {contrast.strategy, contrast.control}:
                continue
            key = tuple(int(k) if isinstance(k, np.integer) else k for k in raw)
            metric = key[-1]
            higher = higher_is_better.get(metric, True)
            grid = gain_grid(group, contrast.strategy, contrast.control,
                             higher_is_better=higher)
            result = run_level(grid.to_numpy(float))
            sign = 1.0 if higher else -1.0
            low, high = sorted((sign * result.ci.low, sign * result.ci.high))
            delta = margin.get(metric)
            state = ""
            if delta is not None and result.enough_seeds:
                found = result.state(delta, alpha)
                state = STATES.get(found, found)
                if found not in STATES and result.p_below(-delta) < alpha:
                    state = "below −δ"
            note = result.note
            values = grid.to_numpy(float)
            if values.size and not np.any(values):
                note = ("identical results: the two strategies are the same Jobs here (e.g. a "
                        "fixed-size teacher at its own N)")
            rows.append({"contrast": contrast.name, "strategy": contrast.strategy,
                         "control": contrast.control, **dict(zip(GROUP, key, strict=True)),
                         "seeds": result.seeds, "cases": result.cases,
                         "difference": sign * result.gain, "ci_low": low, "ci_high": high,
                         "se": result.se, "df": result.df, "p": result.p, "delta": delta,
                         "state": state, "note": note})
    return pd.DataFrame(rows, columns=CONTRAST_COLUMNS)


"""A first look at a protocol's results: mean test Dice per strategy, scenario and N.

Read from the complete MLflow runs only (never a partial one). The full report, with
confidence intervals and paired tests, is ``kdbench report``'s work; this is what ``kdbench
run`` prints at the end.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from kdbench.tracking import COMPLETE, STATUS, Tracker

REGIONS = ("WT", "TC", "ET")


def mean_dice_table(tracker: Tracker) -> pd.DataFrame:
    """Rows (scenario, strategy, N) with the mean over seeds of each region's test Dice.

    A Job that serves several scenarios (``multi``, the upper bound) appears in each.
    """
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.`{STATUS}` = '{COMPLETE}'",
                                      max_results=50000)
    rows: list[dict[str, Any]] = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        for role in tags.get("kdbench.roles", "").split("; "):
            if not role.startswith("strategy "):
                continue
            label, _, scenario = role.removeprefix("strategy ").partition(" @ ")
            row = {"scenario": scenario, "strategy": label, "N": int(tags["kdbench.n"]),
                   "seed": int(tags["kdbench.seed"])}
            for region in REGIONS:
                row[region] = metrics.get(f"test_dice_{region}")
            rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["scenario", "strategy", "N", "seeds", *REGIONS])
    frame = pd.DataFrame(rows)
    table = frame.groupby(["scenario", "strategy", "N"], as_index=False).agg(
        seeds=("seed", "nunique"), **{r: (r, "mean") for r in REGIONS})
    return table.sort_values(["scenario", "N", "strategy"]).reset_index(drop=True)

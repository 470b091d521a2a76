"""A first look at a protocol's results: mean test Dice per strategy, scenario and N, and each
strategy's gain over the protocol's baseline, paired by seed.

Read from the complete MLflow runs only (never a partial one). The full report, with
confidence intervals and paired tests over cases, is ``kdbench report``'s work; this is what
``kdbench run`` prints at the end.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from kdbench.tracking import COMPLETE, JOB_ID, STATUS, Tracker

REGIONS = ("WT", "TC", "ET")
KEYS = ["scenario", "strategy", "N"]


def seed_dice(tracker: Tracker) -> pd.DataFrame:
    """One row per (scenario, strategy, N, seed): the mean test Dice of each region.

    A Job that serves several scenarios (``multi``, the upper bound) appears in each. Only the
    Jobs of the tracker's plan count: runs of Jobs an edited protocol no longer has (other
    sizes, other hyper-parameters) stay in the experiment but not in these tables.
    """
    current = {job.id for job in tracker.plan.jobs}
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.`{STATUS}` = '{COMPLETE}'",
                                      max_results=50000)
    rows: list[dict[str, Any]] = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        if tags.get(JOB_ID) not in current:
            continue
        for role in tags.get("kdbench.roles", "").split("; "):
            if not role.startswith("strategy "):
                continue
            label, _, scenario = role.removeprefix("strategy ").partition(" @ ")
            row = {"scenario": scenario, "strategy": label, "N": int(tags["kdbench.n"]),
                   "seed": int(tags["kdbench.seed"])}
            for region in REGIONS:
                row[region] = metrics.get(f"test_dice_{region}")
            rows.append(row)
    return pd.DataFrame(rows, columns=[*KEYS, "seed", *REGIONS])


def mean_dice_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Rows (scenario, strategy, N): the number of seeds and the mean over seeds per region."""
    if per_seed.empty:
        return pd.DataFrame(columns=[*KEYS, "seeds", *REGIONS])
    table = per_seed.groupby(KEYS, as_index=False).agg(
        seeds=("seed", "nunique"), **{r: (r, "mean") for r in REGIONS})
    return table.sort_values(["scenario", "N", "strategy"]).reset_index(drop=True)


def gain_table(per_seed: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Rows (scenario, strategy, N) for every strategy but ``baseline``: the mean over seeds of
    (strategy − baseline) Dice per region, paired by seed (seeds where both are complete), and
    ``pairs``, the number of such seeds. Empty when the baseline has no complete run."""
    columns = [*KEYS, "pairs", *REGIONS]
    base = per_seed[per_seed["strategy"] == baseline]
    others = per_seed[per_seed["strategy"] != baseline]
    if base.empty or others.empty:
        return pd.DataFrame(columns=columns)
    paired = others.merge(base.drop(columns="strategy"), on=["scenario", "N", "seed"],
                          suffixes=("", "_base"))
    if paired.empty:
        return pd.DataFrame(columns=columns)
    for region in REGIONS:
        paired[region] = paired[region] - paired[f"{region}_base"]
    table = paired.groupby(KEYS, as_index=False).agg(
        pairs=("seed", "nunique"), **{r: (r, "mean") for r in REGIONS})
    return table.sort_values(["scenario", "N", "strategy"]).reset_index(drop=True)[columns]

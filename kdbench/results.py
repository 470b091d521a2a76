"""A first look at a protocol's results: mean test Dice per strategy, scenario and N, and each
strategy's gain over the protocol's baseline, paired by seed.

Read from the complete MLflow runs only (never a partial one). The full report, with
confidence intervals and paired tests over cases, is ``kdbench report``'s work; this is what
``kdbench run`` prints at the end.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from kdbench.modalities import label
from kdbench.tracking import COMPLETE, JOB_ID, STATUS, Tracker, summary_metric_key

REGIONS = ("WT", "TC", "ET")
KEYS = ["scenario", "subset", "strategy", "N"]


def seed_dice(tracker: Tracker) -> pd.DataFrame:
    """One row per (scenario, subset, strategy, N, seed): the mean test Dice of each region.

    ``subset`` is the modalities available at inference the row answers for: each subset a
    Job is scored on (HeMIS and U-HVED: every subset of the scenario); for a Job scored once in
    a one-subset scenario, the scenario's subset (so the upper bound ``multi``, which reads
    every modality, sits on the same row as the strategies it bounds). A Job that serves
    several scenarios appears in each. Only the Jobs of the tracker's plan count: runs of Jobs
    an edited protocol no longer has stay in the experiment but not in these tables.
    """
    plan = tracker.plan
    jobs = {job.id: job for job in plan.jobs}
    scenarios = {s.name: s.subsets() for s in plan.protocol.scenarios}
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.`{STATUS}` = '{COMPLETE}'",
                                      max_results=50000)
    rows: list[dict[str, Any]] = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        job = jobs.get(tags.get(JOB_ID, ""))
        if job is None:
            continue
        evaluated = job.modalities.evaluate
        for role in tags.get("kdbench.roles", "").split("; "):
            if not role.startswith("strategy "):
                continue
            name, _, scenario = role.removeprefix("strategy ").partition(" @ ")
            for subset in evaluated:
                scored = subset if len(evaluated) > 1 else None
                shown = subset
                if len(evaluated) == 1 and len(scenarios.get(scenario, ())) == 1:
                    shown = scenarios[scenario][0]
                row = {"scenario": scenario, "subset": label(shown), "strategy": name,
                       "N": job.n, "seed": job.seed}
                for region in REGIONS:
                    row[region] = metrics.get(summary_metric_key("dice", region, scored))
                rows.append(row)
    return pd.DataFrame(rows, columns=[*KEYS, "seed", *REGIONS])


def mean_dice_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Rows (scenario, subset, strategy, N): the number of seeds and the mean over seeds of
    each region."""
    if per_seed.empty:
        return pd.DataFrame(columns=[*KEYS, "seeds", *REGIONS])
    table = per_seed.groupby(KEYS, as_index=False).agg(
        seeds=("seed", "nunique"), **{r: (r, "mean") for r in REGIONS})
    return table.sort_values(["scenario", "subset", "N", "strategy"]).reset_index(drop=True)


def gain_table(per_seed: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Rows (scenario, subset, strategy, N) for every strategy but ``baseline``: the mean over
    seeds of (strategy − baseline) Dice per region, paired by seed (seeds where both are
    complete), and ``pairs``, the number of such seeds. Empty when the baseline has no complete
    run."""
    columns = [*KEYS, "pairs", *REGIONS]
    base = per_seed[per_seed["strategy"] == baseline]
    others = per_seed[per_seed["strategy"] != baseline]
    if base.empty or others.empty:
        return pd.DataFrame(columns=columns)
    paired = others.merge(base.drop(columns="strategy"),
                          on=["scenario", "subset", "N", "seed"], suffixes=("", "_base"))
    if paired.empty:
        return pd.DataFrame(columns=columns)
    for region in REGIONS:
        paired[region] = paired[region] - paired[f"{region}_base"]
    table = paired.groupby(KEYS, as_index=False).agg(
        pairs=("seed", "nunique"), **{r: (r, "mean") for r in REGIONS})
    return table.sort_values(["scenario", "subset", "N", "strategy"]).reset_index(
        drop=True)[columns]

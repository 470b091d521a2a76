"""A first look at a protocol's results: mean test Dice per strategy, scenario and N, and each
strategy's gain over the protocol's baseline, paired by seed.

Read from the complete MLflow runs only (never a partial one). The full report, with
confidence intervals and paired tests over cases, is ``kdbench report``'s work; this is what
``kdbench run`` prints at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import pandas as pd

from kdbench.metrics.job_scores import summary_metric_key
from kdbench.modalities import label
from kdbench.tracking import JOB_ID, Tracker
from kdbench.types import Job, Role

REGIONS = ("WT", "TC", "ET")
KEYS = ["scenario", "subset", "strategy", "N"]


class ScoredRow(NamedTuple):
    """One complete run seen as one strategy's result on one subset (see :func:`scored_rows`)."""

    run: Any
    job: Job
    strategy: str
    scenario: str
    shown: str
    scored: tuple[str, ...] | None


def scored_rows(tracker: Tracker) -> Iterator[ScoredRow]:
    """Every (complete run, strategy role, subset) of the tracker's plan that a table shows.

    ``shown`` is the modalities available at inference the row answers for: each subset a Job
    is scored on (HeMIS and U-HVED: every subset of the scenario); for a Job scored once in a
    one-subset scenario, the scenario's subset (so the upper bound ``multi``, which reads every
    modality, sits on the same row as the strategies it bounds). ``scored`` is the subset as the
    Job's record names it (``None`` for a Job scored once). A Job that serves several scenarios
    appears in each. Only the Jobs of the tracker's plan count: runs of Jobs an edited protocol
    no longer has stay in the experiment but not in these tables.
    """
    plan = tracker.plan
    jobs = {job.id: job for job in plan.jobs}
    scenarios = {s.name: s.subsets() for s in plan.protocol.scenarios}
    runs = tracker.complete_runs()
    for run in sorted(runs, key=lambda r: r.data.tags.get(JOB_ID, "")):
        job = jobs.get(run.data.tags.get(JOB_ID, ""))
        if job is None:
            continue
        evaluated = job.modalities.evaluate
        for text in run.data.tags.get("kdbench.roles", "").split("; "):
            role = _role(text)
            if role is None or not role.is_strategy:
                continue
            name, scenario = role.label, role.scenario
            for subset in evaluated:
                shown = subset
                if len(evaluated) == 1 and len(scenarios.get(scenario, ())) == 1:
                    shown = scenarios[scenario][0]
                yield ScoredRow(run, job, name, scenario, label(shown),
                                subset if len(evaluated) > 1 else None)


def _role(text: str) -> Role | None:
    """A recorded role, ``None`` for a tag that is not one (older or foreign runs)."""
    try:
        return Role.parse(text)
    except ValueError:
        return None


def seed_dice(tracker: Tracker) -> pd.DataFrame:
    """One row per (scenario, subset, strategy, N, seed): the mean test Dice of each region
    (rows as :func:`scored_rows`)."""
    rows: list[dict[str, Any]] = []
    for row in scored_rows(tracker):
        metrics = row.run.data.metrics
        record = {"scenario": row.scenario, "subset": row.shown, "strategy": row.strategy,
                  "N": row.job.n, "seed": row.job.seed}
        for region in REGIONS:
            record[region] = metrics.get(summary_metric_key("dice", region, row.scored))
        rows.append(record)
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

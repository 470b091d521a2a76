"""The tidy per-case table of a protocol: every test case of every complete run, one value per
row, read from the runs' ``per_case.csv`` artefacts (the record), never from a partial run.

Columns: ``strategy, N, seed, scenario, subset, case, region, metric, value``, then ``run_id``
and ``job_id`` (the MLflow run and the Job the value comes from). ``subset`` is the modalities
available at inference the row answers for, as :func:`kdbench.results.scored_rows` shows it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from kdbench.errors import KdbenchError
from kdbench.modalities import label
from kdbench.results import scored_rows
from kdbench.tracking import Tracker

COLUMNS = ["strategy", "N", "seed", "scenario", "subset", "case", "region", "metric", "value"]
PER_CASE = "per_case.csv"


def per_case_table(tracker: Tracker) -> pd.DataFrame:
    """Every complete strategy run of the tracker's plan as tidy per-case rows, sorted.

    Raises:
        KdbenchError: a complete run without its per-case table (a record that cannot be
            trusted): the message names the run and the Job to rerun.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    frames: list[pd.DataFrame] = []
    tables: dict[str, pd.DataFrame] = {}
    with tempfile.TemporaryDirectory(prefix="kdbench-report-") as scratch:
        for row in scored_rows(tracker):
            run_id = row.run.info.run_id
            if run_id not in tables:
                tables[run_id] = _download(tracker, run_id, row.job.id, Path(scratch))
            table = tables[run_id]
            # a Job scored once has one subset, named by what it reads (multi: all four)
            rows = (table["subset"] == label(row.scored) if row.scored is not None
                    else pd.Series(True, index=table.index))
            part = table.loc[rows, ["case", "region", "metric", "value"]].copy()
            part.insert(0, "subset", row.shown)
            part.insert(0, "scenario", row.scenario)
            part.insert(0, "seed", row.job.seed)
            part.insert(0, "N", row.job.n)
            part.insert(0, "strategy", row.strategy)
            part["run_id"] = run_id
            part["job_id"] = row.job.id
            frames.append(part)
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "run_id", "job_id"])
    table = pd.concat(frames, ignore_index=True)
    table["value"] = table["value"].astype(float)
    return table.sort_values(COLUMNS[:-1]).reset_index(drop=True)


def _download(tracker: Tracker, run_id: str, job_id: str, scratch: Path) -> pd.DataFrame:
    target = scratch / run_id
    target.mkdir()
    try:
        path = tracker.client.download_artifacts(run_id, PER_CASE, str(target))
    except Exception as exc:  # MLflow raises its own exception types per store
        raise KdbenchError(
            f"run {run_id} (Job {job_id}) is complete but its {PER_CASE} artefact cannot be "
            f"read ({exc}); delete the run in MLflow and rerun the Job") from None
    return pd.read_csv(path)

"""`available: all` end to end: one hemis and one uhved Job, each scored on all 15 subsets, with
one MLflow metric and one per-case block per subset, and a results row per subset."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import phantom_protocol

from kdbench.engine.execute import ExecutionSettings
from kdbench.modalities import all_combinations, label, metric_suffix
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.results import seed_dice
from kdbench.runner import run_protocol
from kdbench.tracking import COMPLETE, STATUS, Tracker


def test_one_model_scored_on_every_subset(tmp_path, registry):
    path = phantom_protocol(
        tmp_path, "all_subsets_test", cases=8, training_sizes=[4],
        scenarios=[{"name": "any", "available": "all"}],
        strategies=[{"name": "hemis"}, {"name": "uhved"}],
        backbone={"name": "nnunet", "options": {"patch_size": [16, 16, 16], "batch_size": 2,
                                                "features_per_stage": [8, 16, 32],
                                                "mirroring": False}},
        training={"epochs": 1, "iterations_per_epoch": 2, "val_iterations": 1},
        statistics={"baseline": "hemis"},
    )
    settings = ExecutionSettings(path, tmp_path / "data", tmp_path / "runs",
                           f"sqlite:///{tmp_path / 'mlflow.db'}")
    report = run_protocol(settings, registry)
    assert len(report.todo) == 2  # one Job per strategy, not one per subset

    plan = build_plan(load_protocol(path, registry), registry)
    tracker = Tracker(plan, settings.tracking_uri)
    runs = [r for r in tracker.client.search_runs([tracker.experiment_id])
            if r.data.tags.get(STATUS) == COMPLETE]
    fifteen = all_combinations(("t1", "t1ce", "t2", "flair"))
    for run in runs:
        names = set(run.data.metrics)
        for subset in fifteen:
            assert f"test_dice_WT_{metric_suffix(subset)}" in names
        local = tracker.client.download_artifacts(run.info.run_id, "per_case.csv", str(tmp_path))
        per_case = pd.read_csv(local)
        assert set(per_case["subset"]) == {label(s) for s in fifteen}
        assert len(per_case) == 15 * 2 * 3  # subsets × test cases × regions
        # the summary metric is the mean of that subset's cases
        t1ce = per_case[(per_case["subset"] == "t1ce") & (per_case["region"] == "ET")]
        assert run.data.metrics["test_dice_ET_t1ce"] == pytest.approx(t1ce["value"].mean())

    table = seed_dice(tracker)
    assert sorted(table["strategy"].unique()) == ["hemis", "uhved"]
    for name in ("hemis", "uhved"):
        rows = table[table["strategy"] == name]
        assert sorted(rows["subset"]) == sorted(label(s) for s in fifteen)
        assert rows["WT"].between(0, 1).all()




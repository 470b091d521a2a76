"""nnU-Net's 2d configuration (issue 24: context at CPU cost): a whole slice per patch, trained
and predicted on 3-D cases through the same engine, with a distillation student."""

from __future__ import annotations

import csv

import pytest
from helpers import phantom_protocol, run_cli

from kdbench_plugins.nnunet_backbone import NnUNetOptions


def test_patch_size_must_match_the_configuration():
    from pydantic import ValidationError

    assert NnUNetOptions(configuration="2d", patch_size=(32, 32)).patch_size == (32, 32)
    with pytest.raises(ValidationError, match="'2d' takes a patch_size of 2 values"):
        NnUNetOptions(configuration="2d", patch_size=(16, 16, 16))
    with pytest.raises(ValidationError, match="'3d_fullres' takes a patch_size of 3 values"):
        NnUNetOptions(patch_size=(32, 32))
    # 3d options keep their serialised form (and every Job id)
    assert NnUNetOptions(patch_size=(16, 16, 16)).model_dump(mode="json")["patch_size"] == [
        16, 16, 16]


@pytest.mark.slow  # about a minute: a phantom prepared for 2d and three Jobs
def test_a_2d_grid_trains_predicts_and_scores_whole_volumes(tmp_path):
    path = phantom_protocol(
        tmp_path, "two_d", cases=8, training_sizes=[4],
        strategies=[{"name": "mono"}, {"name": "multi"}, {"name": "kd"}],
        backbone={"name": "nnunet", "options": {
            "configuration": "2d", "patch_size": [32, 32], "batch_size": 4,
            "features_per_stage": [8, 16, 32], "mirroring": False}},
        training={"epochs": 1, "iterations_per_epoch": 2, "val_iterations": 1},
        statistics={"baseline": "mono"})
    out = run_cli("run", str(path), "--data-dir", str(tmp_path / "data"), "--runs-dir",
                  str(tmp_path / "runs"), "--tracking-uri",
                  f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    plans = list((tmp_path / "data").rglob("nnUNetPlans.json"))
    assert plans and (plans[0].parent / "nnUNetPlans_2d").is_dir()
    scored = {}
    for per_case in (tmp_path / "runs").rglob("per_case.csv"):
        rows = list(csv.DictReader(per_case.open()))
        scored[per_case.parent.name] = {r["case"] for r in rows if r["metric"] == "dice"}
    assert len(scored) == 3  # mono, multi (also kd's teacher) and kd, each on the 2 test cases
    assert all(len(cases) == 2 for cases in scored.values())

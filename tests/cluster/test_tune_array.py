"""Tuning workers submitted as a SLURM array (as docs/cluster.md shows) share one Optuna study
on PostgreSQL and log through the MLflow tracking server: the budget is met exactly, and the
teacher both workers need is trained once (the Job lock)."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
from helpers import phantom_protocol

from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.tracking import COMPLETE, STATUS, Tracker
from kdbench.tuning.studies import study_targets

pytestmark = pytest.mark.cluster


def test_tuning_workers_as_a_slurm_array_share_one_study(
        tmp_path, slurm_env, postgres_url, tracking_server, registry):
    protocol = phantom_protocol(
        tmp_path, "tune_array", strategies=[{"name": "kd", "hparams": "tuned"}],
        backbone={"name": "nnunet"}, tuning={"trials": 3, "pruner": "none", "seed": 0},
        statistics={"baseline": None})
    plan = build_plan(load_protocol(protocol, registry), registry)
    (target,) = study_targets(plan, registry)
    prepare = subprocess.run([sys.executable, "-m", "kdbench", "data", "prepare", "--protocol",
                              str(protocol), "--data-dir", str(tmp_path / "data")],
                             capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert prepare.returncode == 0, prepare.stderr
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KDBENCH_")},
           **slurm_env, "KDBENCH_OPTUNA_STORAGE": postgres_url,
           "KDBENCH_TRACKING_URI": tracking_server}
    worker = (f"{sys.executable} -m kdbench tune {protocol} --data-dir {tmp_path / 'data'} "
              f"--runs-dir {tmp_path / 'runs'} --heartbeat 5 --grace 15")
    done = subprocess.run(["sbatch", "--wait", "--array=0-1", "--cpus-per-task=1", "--mem=2G",
                           "--time=20", "-o", str(tmp_path / "worker_%a.out"), "--wrap", worker],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1200)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("worker_*.out")))
    assert done.returncode == 0, done.stderr + logs

    study = optuna.load_study(study_name=target.name, storage=postgres_url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3
    assert {t.user_attrs.get("kdbench.worker") for t in study.trials
            if t.state.name == "COMPLETE"} <= {0, 1}
    # kd's teacher, needed by both workers, trained once: one run, complete
    teacher = plan.job(target.template.depends_on["teacher"])
    tracker = Tracker(plan, tracking_server)
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.`kdbench.job_id` = '{teacher.id}'")
    assert [r.data.tags.get(STATUS) for r in runs] == [COMPLETE]

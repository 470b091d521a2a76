"""``kdbench tune`` on the phantom: two strategies with one trial budget, pruning, the record,
``kdbench run`` using the best parameters, and a killed tuner continued without loss."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import optuna
import pytest
from helpers import phantom_protocol, run_cli

from kdbench.engine.execute import ExecutionSettings
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.runner import run_protocol
from kdbench.tracking import COMPLETE, STATUS, Tracker
from kdbench.tuning.studies import study_targets
from kdbench.tuning.tune import tune_protocol

TRAINING = {"epochs": 3, "iterations_per_epoch": 2, "val_iterations": 1}


def _protocol(root, name, strategies, trials=3):
    baseline = "mono" if any(s["name"] == "mono" for s in strategies) else None
    return phantom_protocol(root, name, strategies=strategies, backbone={"name": "nnunet"},
                            tuning={"trials": trials, "pruner": "median", "seed": 0},
                            training=TRAINING, statistics={"baseline": baseline})


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, registry):
    """kd and uhved tuned with 3 trials each (kd's teacher trained first), then the grid run."""
    root = tmp_path_factory.mktemp("tune")
    path = _protocol(root, "tune_test", [{"name": "mono"}, {"name": "kd", "hparams": "tuned"},
                                         {"name": "uhved", "hparams": "tuned"}])
    storage = f"sqlite:///{root / 'studies.db'}"
    settings = ExecutionSettings(path, root / "data", root / "runs",
                                 f"sqlite:///{root / 'mlflow.db'}", optuna_storage=storage)
    summaries = tune_protocol(settings, registry, storage)
    return {"root": root, "path": path, "storage": storage, "settings": settings,
            "summaries": summaries, "plan": build_plan(load_protocol(path, registry), registry)}


def test_both_strategies_get_the_same_budget_and_one_trial_is_pruned(tuned):
    summaries = {s.target.label: s for s in tuned["summaries"]}
    assert set(summaries) == {"kd", "uhved"}
    for summary in summaries.values():
        assert summary.counted == summary.budget == 3 and summary.failed == 0
        study = optuna.load_study(study_name=summary.target.name, storage=tuned["storage"])
        assert len(study.trials) == 3
        assert summary.best_params == study.best_trial.params
    assert sum(s.pruned for s in summaries.values()) >= 1
    # the search spaces are the strategies' own declarations
    assert set(summaries["kd"].best_params) == {"kd_weight", "latent_loss", "latent_weight",
                                                "temperature"}
    assert set(summaries["uhved"].best_params) == {"kl_weight", "reconstruction_weight"}
    kd = optuna.load_study(study_name=summaries["kd"].target.name, storage=tuned["storage"])
    for trial in kd.trials:
        assert 0.001 <= trial.params["kd_weight"] <= 1.0
        assert 1.0 <= trial.params["temperature"] <= 20.0
        assert len(trial.intermediate_values) >= 1  # validation Dice reported per epoch


def test_trials_are_nested_mlflow_runs(tuned):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tuned["settings"].tracking_uri)
    experiment = client.get_experiment_by_name("kdbench/tune_test/tuning")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = {r.info.run_id: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    assert len(parents) == 2
    for summary in tuned["summaries"]:
        parent = next(r for r in parents.values()
                      if r.data.tags["kdbench.study"] == summary.target.name)
        assert parent.data.metrics["trials_complete"] == summary.complete
        assert parent.data.metrics["trials_pruned"] == summary.pruned
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")
                    == parent.info.run_id]
        assert len(children) == 3
        states = sorted(r.data.tags["kdbench.optuna_state"] for r in children)
        assert states.count("PRUNED") == summary.pruned
        for child in children:
            history = client.get_metric_history(child.info.run_id, "val_dice_mean")
            assert [m.step for m in history] == list(range(len(history))) and history
            number = int(child.data.tags["kdbench.trial"])
            trial = optuna.load_study(study_name=summary.target.name,
                                      storage=tuned["storage"]).trials[number]
            for key, value in trial.params.items():
                assert child.data.params[f"hparams.{key}"] == str(value)


def test_run_uses_the_best_parameters(tuned, registry):
    report = run_protocol(tuned["settings"], registry)
    assert report.todo  # mono, kd, uhved (and kd's teacher, trained while tuning)
    tracker = Tracker(tuned["plan"], tuned["settings"].tracking_uri)
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.`{STATUS}` = '{COMPLETE}'")
    for summary in tuned["summaries"]:
        run = next(r for r in runs
                   if r.data.tags["kdbench.component"] == summary.target.label)
        assert run.data.tags["kdbench.tuned_study"] == summary.target.name
        for key, value in summary.best_params.items():
            assert run.data.params[f"hparams.{key}"] == str(value)
    # the report lists each tuned strategy's budget
    from kdbench.report.build import ReportSettings, write_report

    s = tuned["settings"]
    index = write_report(ReportSettings(s.protocol_path, s.data_dir, s.runs_dir, s.tracking_uri,
                                        output=tuned["root"] / "report",
                                        optuna_storage=tuned["storage"]), registry)
    html = index.read_text()
    assert "Tuning budget" in html
    for summary in tuned["summaries"]:
        assert summary.target.name in html


def test_run_before_tuning_names_the_study(tmp_path, registry):
    path = _protocol(tmp_path, "untuned", [{"name": "kd", "hparams": "tuned"}])
    out = run_cli("run", str(path), "--only", "kd", "--data-dir", str(tmp_path / "data"),
                  "--runs-dir", str(tmp_path / "runs"), "--tracking-uri",
                  f"sqlite:///{tmp_path / 'm.db'}", "--storage",
                  f"sqlite:///{tmp_path / 's.db'}", cwd=tmp_path)
    assert out.returncode != 0
    assert "untuned/kd/t1ce_only/N6/" in out.stderr and "kdbench tune" in out.stderr


def test_a_strategy_without_search_space_cannot_be_tuned(tmp_path, registry):
    path = _protocol(tmp_path, "mono_tuned", [{"name": "mono", "hparams": "tuned"}])
    out = run_cli("tune", str(path), "--storage", f"sqlite:///{tmp_path / 's.db'}",
                  cwd=tmp_path)
    assert out.returncode != 0 and "declares no search space" in out.stderr


def _counted(storage, name):
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return []
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


@pytest.mark.slow  # about 2 minutes: a tuner SIGKILLed mid-trial, then resumed
def test_a_killed_tuner_continues_without_losing_or_repeating_trials(tmp_path, registry):
    path = _protocol(tmp_path, "killed_tune", [{"name": "uhved", "hparams": "tuned"}],
                     trials=4)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    (target,) = study_targets(build_plan(load_protocol(path, registry), registry), registry)
    command = [sys.executable, "-m", "kdbench", "tune", str(path), "--storage", storage,
               "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_counted(storage, target.name)) >= 2:
            time.sleep(1.0)  # into the third trial
            break
        time.sleep(0.3)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: t.params for t in _counted(storage, target.name)}
    assert 2 <= len(before) < 4
    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name=target.name, storage=storage)
    counted = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(counted) == 4  # the budget, not more
    for number, params in before.items():  # nothing lost
        assert study.trials[number].params == params
        assert study.trials[number].state.name in ("COMPLETE", "PRUNED")
    # a killed trial is failed, not counted; no finished trial was run again
    assert [t.state.name for t in study.trials].count("FAIL") <= 1
    drawn = [tuple(sorted(t.params.items())) for t in counted]
    assert len(set(drawn)) == len(drawn)
    shown = run_cli("tune", str(path), "--show", "--storage", storage, cwd=tmp_path)
    assert shown.returncode == 0 and "4/4 trials" in shown.stdout
    assert "best kl_weight" in shown.stdout and "trial   0" in shown.stdout

"""``kdbench run``: end to end on the phantom, idempotent, killed and resumed, in MLflow."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers import ROOT, phantom_protocol, prepared_source, run_cli

from kdbench.engine.execute import ExecutionSettings
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.runner import run_protocol, select_jobs
from kdbench.status import counts, protocol_status
from kdbench.tracking import COMPLETE, JOB_ID, STATUS, Tracker


@pytest.fixture(scope="module")
def grid(tmp_path_factory, registry, prepared_phantom):
    """A three-Job protocol (multi teacher, mono, kd) on the session's prepared phantom (its
    source and prepared folder reused: nothing is prepared again)."""
    from kdbench.data.protocol_data import ensure_data

    root = tmp_path_factory.mktemp("runner")
    path = phantom_protocol(
        root, "runner_test",
        dataset=prepared_source(prepared_phantom),
        strategies=[{"name": "mono"}, {"name": "kd", "hparams": {"temperature": 4.0}}],
        backbone={"name": "nnunet"}, metrics=["dice", "hd95"])
    protocol = load_protocol(path, registry)
    data_dir = prepared_phantom.path.parent
    ensure_data(protocol, registry, data_dir)
    return {"root": root, "protocol": path, "plan": build_plan(protocol, registry),
            "data": data_dir}


def _settings(grid, name):
    root = grid["root"]
    return ExecutionSettings(grid["protocol"], grid["data"], root / name / "runs",
                       f"sqlite:///{root / name / 'mlflow.db'}")


def _complete_runs(grid, settings):
    tracker = Tracker(grid["plan"], settings.tracking_uri)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=1000)
    return tracker, runs


def test_select_only_pulls_dependencies(grid):
    plan = grid["plan"]
    assert {j.component for j in select_jobs(plan, ["kd"])} == {"kd", "multi"}
    assert {j.component for j in select_jobs(plan, ["mono"])} == {"mono"}


def test_run_twice_does_no_work_the_second_time(grid, registry):
    settings = _settings(grid, "whole")
    first = run_protocol(settings, registry)
    assert len(first.todo) == 3 and first.skipped == []
    tracker, runs = _complete_runs(grid, settings)
    complete = [r for r in runs if r.data.tags.get(STATUS) == COMPLETE]
    assert sorted(r.data.tags[JOB_ID] for r in complete) == sorted(j.id for j in grid["plan"].jobs)
    kd = next(r for r in complete if r.data.tags["kdbench.component"] == "kd")
    teacher = next(r for r in complete if r.data.tags["kdbench.component"] == "multi")
    assert kd.data.tags["kdbench.teacher_run_id"] == teacher.info.run_id
    assert kd.data.params["hparams.temperature"] == "4.0"
    assert {"test_dice_WT", "test_hd95_ET", "train_distillation", "val_dice_mean"} <= set(
        kd.data.metrics)
    history = tracker.client.get_metric_history(kd.info.run_id, "train_loss")
    assert [m.step for m in history] == [0, 1]
    artifacts = {a.path for a in tracker.client.list_artifacts(kd.info.run_id)}
    assert "per_case.csv" in artifacts
    from kdbench.results import mean_dice_table, seed_dice

    table = mean_dice_table(seed_dice(tracker))
    assert sorted(table["strategy"]) == ["kd", "mono"]  # multi is only kd's teacher here
    assert set(table["N"]) == {6} and set(table["seeds"]) == {1}
    kd_row = table[table["strategy"] == "kd"].iloc[0]
    assert kd_row["WT"] == pytest.approx(kd.data.metrics["test_dice_WT"])
    second = run_protocol(settings, registry)
    assert second.todo == [] and len(second.skipped) == 3
    assert len(_complete_runs(grid, settings)[1]) == len(runs)  # no new run
    # the CLI says so, and prints the means and kd's gain over mono (the protocol's baseline)
    out = run_cli("run", str(settings.protocol_path), "--data-dir", str(settings.data_dir),
                  "--runs-dir", str(settings.runs_dir), "--tracking-uri", settings.tracking_uri)
    assert out.returncode == 0, out.stderr
    assert "3 Jobs already complete, ran 0" in out.stdout
    mono = next(r for r in complete if r.data.tags["kdbench.component"] == "mono")
    gain = kd.data.metrics["test_dice_WT"] - mono.data.metrics["test_dice_WT"]
    gain_rows = out.stdout.split("Gain over mono")[1]
    assert f"{gain:+.3f}" in next(line for line in gain_rows.splitlines() if " kd " in line)
    assert len(_complete_runs(grid, settings)[1]) == len(runs)


def test_report_of_the_trained_grid(grid, registry, tmp_path):
    """The report of real Jobs: its numbers are the engine's summary metrics, and the
    qualitative figure reads their predictions (one N, one seed, two strategies: no trend, no
    Friedman, and the report says so rather than failing)."""
    import json

    from kdbench.report.build import ReportSettings, write_report

    settings = _settings(grid, "whole")
    run_protocol(settings, registry)  # complete already when run in order; else trains
    index = write_report(ReportSettings(settings.protocol_path, settings.data_dir,
                                        settings.runs_dir, settings.tracking_uri,
                                        output=tmp_path / "report"), registry)
    tracker, runs = _complete_runs(grid, settings)
    results = json.loads((index.parent / "results.json").read_text())
    summary = pd.DataFrame(results["summary"])
    for run in runs:
        strategy = run.data.tags["kdbench.component"]
        if strategy == "multi":
            continue  # kd's teacher only
        for region in ("WT", "TC", "ET"):
            row = summary[(summary["strategy"] == strategy) & (summary["region"] == region)
                          & (summary["metric"] == "dice")].iloc[0]
            assert row["mean"] == pytest.approx(run.data.metrics[f"test_dice_{region}"])
    assert (index.parent / "figures" / "qualitative_t1ce_only_t1ce.png").stat().st_size > 5000
    assert results["benefit"][0]["trend"] == "one training size: no trend to fit"
    assert results["friedman"] == []


def test_killed_run_finishes_with_one_complete_run_per_job(grid, registry):
    settings = _settings(grid, "killed")
    command = [sys.executable, "-m", "kdbench", "run", str(settings.protocol_path),
               "--data-dir", str(settings.data_dir), "--runs-dir", str(settings.runs_dir),
               "--tracking-uri", settings.tracking_uri]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if list(settings.runs_dir.rglob("checkpoint_latest.pth")):
            break  # mid-way through the first Job
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, runs = _complete_runs(grid, settings)
    assert runs and not [r for r in runs if r.data.tags.get(STATUS) == COMPLETE]
    # its run still says RUNNING, but no process holds the Job: status calls it failed
    assert runs[0].info.status == "RUNNING"
    assert counts(protocol_status(settings, registry)[1]) == {
        "done": 0, "running": 0, "pending": 0, "failed": 1, "todo": 2}

    report = run_protocol(settings, registry)
    assert len(report.todo) == 3
    _, runs = _complete_runs(grid, settings)
    complete = [r for r in runs if r.data.tags.get(STATUS) == COMPLETE]
    assert sorted(r.data.tags[JOB_ID] for r in complete) == sorted(j.id for j in grid["plan"].jobs)
    partial = [r for r in runs if r.data.tags.get(STATUS) != COMPLETE]
    assert len(partial) == 1 and partial[0].info.status in ("KILLED", "FAILED")
    # the same results as the uninterrupted grid (deterministic on CPU); no work if done
    run_protocol(_settings(grid, "whole"), registry)
    _, whole = _complete_runs(grid, _settings(grid, "whole"))
    by_job = {r.data.tags[JOB_ID]: r.data.metrics for r in whole
              if r.data.tags.get(STATUS) == COMPLETE}
    for run in complete:
        ours = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
        theirs = {k: v for k, v in by_job[run.data.tags[JOB_ID]].items() if k.startswith("test_")}
        assert ours == theirs


def test_local_executor_runs_jobs_in_subprocesses(grid, registry):
    settings = _settings(grid, "local")
    report = run_protocol(settings, registry, executor="local", only=["mono"])
    assert [grid["plan"].job(j).component for j in report.todo] == ["mono"]
    _, runs = _complete_runs(grid, settings)
    assert [r.data.tags["kdbench.component"] for r in runs
            if r.data.tags.get(STATUS) == COMPLETE] == ["mono"]
    assert counts(protocol_status(settings, registry)[1]) == {
        "done": 1, "running": 0, "pending": 0, "failed": 0, "todo": 2}


def test_dry_run_and_unknown_names(grid, registry):
    settings = _settings(grid, "dry")
    report = run_protocol(settings, registry, dry_run=True)
    assert len(report.todo) == 3 and not settings.runs_dir.exists()
    from kdbench.errors import KdbenchError

    with pytest.raises(KdbenchError, match="--only hemis: not in this protocol"):
        run_protocol(settings, registry, only=["hemis"])
    with pytest.raises(KdbenchError, match="unknown executor 'slurmm'"):
        run_protocol(settings, registry, executor="slurmm")

"""The ``slurm`` executor against a real single-node SLURM (scripts/cluster/slurm.sh) and an
MLflow tracking server on PostgreSQL (scripts/cluster/mlflow_server.sh), all on 127.0.0.1:
job arrays in dependency order, one complete record per Job, an interrupted grid finished by
the same command, and a preempted task requeued and resumed (submitit's local executor, since
SLURM holds a requeued job for ~150 s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import phantom_protocol, run_cli

from kdbench.engine.execute import ExecutionSettings
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.tracking import COMPLETE, JOB_ID, STATUS, Tracker

pytestmark = pytest.mark.cluster

RECORDS = "submissions.jsonl"
SMALL = {"cpus_per_task": 1, "mem_gb": 2, "time_min": 20, "poll_s": 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, registry):
    """The phantom prepared once for every grid of this module."""
    from kdbench.data.protocol_data import ensure_data

    root = tmp_path_factory.mktemp("slurm_data")
    ensure_data(load_protocol(_grid(root, "prepare"), registry), registry, root / "data")
    return root / "data"


def _grid(folder: Path, name: str, **fields) -> Path:
    """mono, multi (kd's teacher) and kd: two waves, three Jobs."""
    fields = {"strategies": [{"name": "mono"}, {"name": "kd"}], **fields}
    return phantom_protocol(folder, name, backbone={"name": "nnunet"}, **fields)


def _profile(folder: Path, **options) -> Path:
    path = folder / "profile.yaml"
    path.write_text(yaml.safe_dump({"executors": {"slurm": {**SMALL, **options}}}))
    return path


def _runs(protocol: Path, registry, uri: str):
    plan = build_plan(load_protocol(protocol, registry), registry)
    tracker = Tracker(plan, uri)
    return plan, tracker.client.search_runs([tracker.experiment_id], max_results=1000)


def _complete_per_job(runs) -> dict[str, int]:
    out: dict[str, int] = {}
    for run in runs:
        if run.data.tags.get(STATUS) == COMPLETE:
            out[run.data.tags[JOB_ID]] = out.get(run.data.tags[JOB_ID], 0) + 1
    return out


def _scontrol(env, job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True,
                         text=True, env={**os.environ, **env}, check=True).stdout
    first = out.strip().splitlines()[0]
    return dict(part.split("=", 1) for part in first.split() if "=" in part)


def _cli(args, env, cwd):
    return run_cli(*args, env=env, cwd=cwd)


def test_a_grid_runs_as_job_arrays_and_records_through_the_server(
        tmp_path, data_dir, slurm_env, tracking_server, registry):
    protocol = _grid(tmp_path, "slurm_grid")
    args = ["run", str(protocol), "--executor", "slurm", "--profile", str(_profile(tmp_path)),
            "--data-dir", str(data_dir), "--runs-dir", str(tmp_path / "runs"),
            "--tracking-uri", tracking_server]
    out = _cli(args, slurm_env, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "wave 1: 2 Job(s) submitted as array" in out.stdout
    assert "wave 2: 1 Job(s) submitted as array" in out.stdout
    plan, runs = _runs(protocol, registry, tracking_server)
    assert _complete_per_job(runs) == {j.id: 1 for j in plan.jobs}
    # every task ran under SLURM, and kd's array became eligible only after its teacher's ended
    rows = {r["job_id"]: r for r in map(json.loads, (
        tmp_path / "runs" / "slurm_grid" / "executors" / "slurm" / "submissions.jsonl")
        .read_text().splitlines())}
    assert set(rows) == {j.id for j in plan.jobs}
    kd = next(j for j in plan.jobs if j.component == "kd")
    teacher = next(j for j in plan.jobs if j.component == "multi")
    kd_info = _scontrol(slurm_env, rows[kd.id]["slurm_id"])
    teacher_info = _scontrol(slurm_env, rows[teacher.id]["slurm_id"])
    assert kd_info["JobState"] == teacher_info["JobState"] == "COMPLETED"
    assert kd_info["EligibleTime"] >= teacher_info["EndTime"]
    assert kd_info["Partition"] == "debug" and kd_info["NumCPUs"] == "1"
    # status from the login node: all done, with their SLURM ids
    status = _cli(["status", str(protocol), "--all", "--runs-dir", str(tmp_path / "runs"),
                   "--tracking-uri", tracking_server], slurm_env, tmp_path)
    assert status.returncode == 0, status.stderr
    assert "done: 3, running: 0, pending: 0, failed: 0, todo: 0" in status.stdout
    assert rows[kd.id]["slurm_id"] in status.stdout and "COMPLETED" in status.stdout


def _wait_for(condition, timeout: float, what: str, poll: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_an_interrupted_grid_is_finished_by_resubmitting_the_same_command(
        tmp_path, data_dir, slurm_env, tracking_server, registry, monkeypatch):
    from kdbench.status import protocol_status

    protocol = _grid(tmp_path, "slurm_interrupted",
                     training={"epochs": 30, "iterations_per_epoch": 2, "val_iterations": 1})
    runs_dir = tmp_path / "runs"
    args = ["run", str(protocol), "--executor", "slurm",
            "--profile", str(_profile(tmp_path, wait=False)), "--data-dir", str(data_dir),
            "--runs-dir", str(runs_dir), "--tracking-uri", tracking_server]
    first = _cli(args, slurm_env, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "submitted or queued" in first.stdout
    assert "0 Jobs already complete, submitted 3" in first.stdout
    records = runs_dir / "slurm_interrupted" / "executors" / "slurm" / "submissions.jsonl"
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(rows) == 3
    # the same command while the grid is queued or running submits nothing twice
    again = _cli(args, slurm_env, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("not submitted again") == 3
    assert len(records.read_text().splitlines()) == 3

    settings = ExecutionSettings(protocol, data_dir, runs_dir, tracking_server)
    for key, value in slurm_env.items():  # status asks SLURM (sacct) from this process
        monkeypatch.setenv(key, value)
    # kill the first wave while it trains: its tasks end CANCELLED, kd's array is cancelled
    # by SLURM (its dependency can never be satisfied)
    _wait_for(lambda: any(list((runs_dir / "slurm_interrupted").glob("*/epochs.jsonl"))),
              300, "a first epoch")
    array = rows[0]["slurm_id"].split("_")[0]
    subprocess.run(["scancel", array], check=True, env={**os.environ, **slurm_env})
    _wait_for(lambda: all(s.state == "failed" for s in
                          protocol_status(settings, registry)[1]), 120,
              "every Job to show as failed")
    # the same command again finishes the grid
    resumed = _cli(args, slurm_env, tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "not submitted again" not in resumed.stdout
    _wait_for(lambda: all(s.state == "done" for s in
                          protocol_status(settings, registry)[1]), 600, "the grid",
              poll=3)
    plan, runs = _runs(protocol, registry, tracking_server)
    assert _complete_per_job(runs) == {j.id: 1 for j in plan.jobs}
    killed = [r for r in runs if r.data.tags.get(STATUS) != COMPLETE]
    assert killed and all(r.info.status in ("KILLED", "FAILED") for r in killed)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


EPOCHS = 15


def _preempted(tmp_path, data_dir, registry, name, profile, env, preempt):
    """Run a one-Job protocol through the slurm executor, call ``preempt(row)`` with its
    submission record once three epochs are logged, and check that the Job was requeued,
    resumed from its checkpoint (not restarted) and recorded once with the whole curve."""
    protocol = _grid(tmp_path, name, strategies=[{"name": "mono"}],
                     training={"epochs": EPOCHS, "iterations_per_epoch": 2, "val_iterations": 1})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "kdbench", "run", str(protocol), "--executor", "slurm",
            "--profile", str(profile), "--data-dir", str(data_dir),
            "--runs-dir", str(tmp_path / "runs"), "--tracking-uri", uri]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KDBENCH_")}, **env}
    runner = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        records = tmp_path / "runs" / name / "executors" / "slurm" / RECORDS
        row = json.loads(_wait_for(lambda: records.exists() and records.read_text(), 120,
                                   "the submission").splitlines()[0])
        epochs = tmp_path / "runs" / name / row["job_id"] / "epochs.jsonl"
        _wait_for(lambda: epochs.exists() and len(epochs.read_text().splitlines()) >= 3, 300,
                  "three epochs")
        preempt(row)
        output, _ = runner.communicate(timeout=900)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, output
    assert "requeued, it resumes from its last checkpoint" in Path(row["stdout"]).read_text()
    logged = [json.loads(line)["epoch"] for line in epochs.read_text().splitlines()]
    assert logged.count(0) == 1  # resumed, not restarted
    assert sorted(set(logged)) == list(range(EPOCHS))
    plan, runs = _runs(protocol, registry, uri)
    assert _complete_per_job(runs) == {plan.jobs[0].id: 1}
    assert len(runs) == 2  # the stopped attempt and the resumed one
    done = next(r for r in runs if r.data.tags.get(STATUS) == COMPLETE)
    history = Tracker(plan, uri).client.get_metric_history(done.info.run_id, "val_dice_mean")
    assert sorted({m.step for m in history}) == list(range(EPOCHS))  # the whole curve
    return row


def test_a_preempted_task_is_requeued_and_resumes_from_its_checkpoint(
        tmp_path, data_dir, registry):
    """submitit's preemption signal (USR2) to a running task: the Job's process is stopped,
    the task requeued, and the Job resumes from its last epoch checkpoint."""
    def preempt(row):
        worker = _children(int(row["slurm_id"]))  # submitit's controller -> the task
        assert len(worker) == 1
        os.kill(worker[0], signal.SIGUSR2)

    _preempted(tmp_path, data_dir, registry, "slurm_preempted",
               _profile(tmp_path, cluster="local", poll_s=1), {}, preempt)


def test_a_preempted_slurm_task_is_requeued_by_slurm_and_resumes(
        tmp_path, data_dir, slurm_env, registry):
    """The same on the real SLURM: USR2 to the task's step (what SLURM sends before the time
    limit or on preemption), submitit requeues it (`scontrol requeue`; SLURM holds it ~2 min),
    and the Job resumes from its checkpoint."""
    def preempt(row):
        subprocess.run(["scancel", "--signal=USR2", row["slurm_id"]], check=True,
                       env={**os.environ, **slurm_env})

    row = _preempted(tmp_path, data_dir, registry, "slurm_requeued", _profile(tmp_path),
                     slurm_env, preempt)
    assert _scontrol(slurm_env, row["slurm_id"])["Restarts"] == "1"

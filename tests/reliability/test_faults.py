"""Fault injection: a real ``kdbench run`` SIGKILLed in each phase of a grid, then run again.

One grid (the reduced demo: ``mono``, ``multi`` as upper bound and ``kd``'s teacher, ``kd``)
is killed in turn during its data preparation (from outside, the process group, while nnU-Net
preprocesses), its teacher's training (the epoch-0 checkpoint in its temporary file, not yet
renamed), its student's training (epoch 1 logged, not checkpointed), its evaluation (the test
predictions written, ``done.json`` not) and its MLflow logging (artefacts and summary metrics
logged, not the complete tag); after each kill the record is checked (nothing partial counts),
and the last run finishes the grid. It must end with exactly one complete record per Job and
the reference's per-case tables, byte for byte (CPU: deterministic), on data prepared afresh
(the determinism check: same splits, Job ids and results from fresh folders).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pandas as pd
from reliability.grid import complete_runs, kdbench, per_case_bytes, run_args, runs_by_job

from kdbench.engine.job import job_dir
from kdbench.results import seed_dice
from kdbench.status import protocol_status
from kdbench.tracking import COMPLETE, STATUS, Tracker

#: (phase, KDBENCH_FAULT) of each kill after the data preparation's, in the order they happen
FAULTS = [
    ("teacher training", "checkpoint:component=multi,file=checkpoint_latest.pth"),
    ("student training", "epoch:component=kd,epoch=1"),
    ("evaluation", "predict:component=kd"),
    ("MLflow logging", "record:component=kd"),
]


def _kill_during_preparation(settings, name):
    """Start the grid on a fresh data folder; SIGKILL its process group once nnU-Net writes
    the dataset's temporary folder."""
    proc = kdbench(*run_args(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if any((tmp / "nnunet").is_dir() for tmp in settings.data_dir.glob(f".tmp-{name}-*")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"preparation ended before the kill: {proc.stderr.read()}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return proc.returncode


def _run(settings, fault=None):
    proc = kdbench(*run_args(settings), env={"KDBENCH_FAULT": fault} if fault else None,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=900)
    return proc.returncode, out + err


def _job(grid, component):
    return next(j for j in grid.plan.jobs if j.component == component)


def _counted(grid, settings):
    """Job ids the result readers see: complete runs, and the rows of the results table."""
    tracker = Tracker(grid.plan, settings.tracking_uri)
    shown = {(row.strategy) for row in seed_dice(tracker).itertuples()}
    return tracker.complete_job_ids(), shown


def _check_after_kill(grid, settings, registry, phase):
    """What each kill must leave: the killed Job's run incomplete, uncounted, called failed."""
    runs = runs_by_job(grid.plan, settings.tracking_uri)
    complete, shown = _counted(grid, settings)
    killed = {"teacher training": "multi", "student training": "kd", "evaluation": "kd",
              "MLflow logging": "kd"}[phase]
    job = _job(grid, killed)
    latest = max(runs[job.id], key=lambda r: r.info.start_time)
    assert latest.data.tags.get(STATUS) != COMPLETE and latest.info.status == "RUNNING"
    assert job.id not in complete and killed not in shown
    assert all(len([r for r in v if r.data.tags.get(STATUS) == COMPLETE]) <= 1
               for v in runs.values())
    states = {s.job.component: s.state for s in protocol_status(settings, registry)[1]}
    assert states[killed] == "failed"
    folder = job_dir(settings.runs_dir, grid.plan, job)
    fold = next(folder.glob("nnunet/*/*/fold_0"), None)
    if phase == "teacher training":  # killed between the temporary file and the rename
        assert (fold / "checkpoint_latest.pth.tmp").exists()
        assert not (fold / "checkpoint_latest.pth").exists()
        assert complete == {_job(grid, "mono").id} and shown == {"mono"}
    elif phase == "student training":  # epoch 1 logged, only epoch 0's checkpoint on disk
        logged = [json.loads(line)["epoch"] for line in
                  (folder / "epochs.jsonl").read_text().splitlines()]
        assert logged == [0, 1]
        assert (fold / "checkpoint_latest.pth").exists()
        assert not (fold / "checkpoint_final.pth").exists()
    elif phase == "evaluation":
        assert list((folder / "predictions" / "t1ce").glob("*.nii.gz"))
        assert not (folder / "done.json").exists()
    else:  # MLflow logging: the metrics are there, the run still does not count
        assert "test_dice_WT" in latest.data.metrics and shown == {"mono", "multi"}
        tracker = Tracker(grid.plan, settings.tracking_uri)
        assert "per_case.csv" in {a.path for a in tracker.client.list_artifacts(
            latest.info.run_id)}


def test_grid_killed_in_every_phase_finishes_as_the_uninterrupted_one(grid, registry,
                                                                       tmp_path):
    settings = grid.settings(tmp_path, data_dir=tmp_path / "data")
    name = "phantom"
    kills = 0

    # 1. data preparation: killed from outside while nnU-Net preprocesses
    assert _kill_during_preparation(settings, name) == -signal.SIGKILL
    kills += 1
    assert not (settings.data_dir / name / "prepared.json").exists()
    assert list(settings.data_dir.glob(f".tmp-{name}-*"))  # what the next run removes
    assert all(not runs for runs in runs_by_job(grid.plan, settings.tracking_uri).values())

    # 2-5. teacher training, student training, evaluation, MLflow logging
    for phase, fault in FAULTS:
        code, output = _run(settings, fault)
        assert code == -signal.SIGKILL, f"{phase}: the fault was not reached\n{output[-3000:]}"
        assert "fault injected at" in output
        kills += 1
        _check_after_kill(grid, settings, registry, phase)
    assert not list(settings.data_dir.glob(f".tmp-{name}-*"))

    # the last run finishes the grid
    code, output = _run(settings)
    assert code == 0, output[-3000:]
    assert kills == 5

    runs = runs_by_job(grid.plan, settings.tracking_uri)
    complete = complete_runs(grid.plan, settings.tracking_uri)
    reference = complete_runs(grid.plan, grid.reference.tracking_uri)
    assert {job: len(found) for job, found in complete.items()} == {
        job.id: 1 for job in grid.plan.jobs}
    # every other attempt was marked KILLED by the next one; none is left RUNNING
    attempts = {_job(grid, c).id: n for c, n in (("mono", 1), ("multi", 2), ("kd", 4))}
    assert {job: len(found) for job, found in runs.items()} == attempts
    for found in runs.values():
        assert sorted(r.info.status for r in found if r.data.tags.get(STATUS) != COMPLETE) == [
            "KILLED"] * (len(found) - 1)

    for job in grid.plan.jobs:
        ours, theirs = complete[job.id][0], reference[job.id][0]
        assert per_case_bytes(grid.plan, settings.tracking_uri, ours, tmp_path / "a" / job.id) \
            == per_case_bytes(grid.plan, grid.reference.tracking_uri, theirs,
                              tmp_path / "b" / job.id), job.component
        assert {k: v for k, v in ours.data.metrics.items() if k.startswith("test_")} == {
            k: v for k, v in theirs.data.metrics.items() if k.startswith("test_")}
        # the whole curve, each epoch once, as logged by the uninterrupted run
        for key in ("train_loss", "val_dice_mean"):
            curves = [[(m.step, m.value) for m in sorted(Tracker(grid.plan, uri).client
                       .get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
                      for run, uri in ((ours, settings.tracking_uri),
                                       (theirs, grid.reference.tracking_uri))]
            assert curves[0] == curves[1] and [s for s, _ in curves[0]] == [0, 1], key
        done = [json.loads((job_dir(s.runs_dir, grid.plan, job) / "done.json").read_text())
                for s in (settings, grid.reference)]
        for key in ("train_cases", "test_cases", "unlabelled_cases", "dependencies"):
            assert done[0][key] == done[1][key], key
        assert done[0]["splits"]["seed_hash"] == done[1]["splits"]["seed_hash"]

    # determinism: the splits file made from a fresh data folder is the reference's, byte for
    # byte, and the results tables are equal
    fresh, ref = (next((d / name / "splits").glob("split-*.json"))
                  for d in (settings.data_dir, grid.data_dir))
    assert fresh.name == ref.name and fresh.read_bytes() == ref.read_bytes()
    pd.testing.assert_frame_equal(
        seed_dice(Tracker(grid.plan, settings.tracking_uri)),
        seed_dice(Tracker(grid.plan, grid.reference.tracking_uri)), check_exact=True)


def test_a_fault_point_not_named_is_free(tmp_path):
    """Without KDBENCH_FAULT, or with another point or other facts, nothing happens; with
    matching ones the process dies of SIGKILL (a real one: no exit handler runs)."""
    import sys

    script = ("import atexit, os, pathlib, sys\n"
              "from kdbench.faults import fault_point, fault_scope\n"
              "atexit.register(lambda: pathlib.Path(sys.argv[1]).write_text('clean exit'))\n"
              "for fault in sys.argv[2:]:\n"
              "    os.environ['KDBENCH_FAULT'] = fault\n"
              "    with fault_scope(component='kd'):\n"
              "        fault_point('epoch', epoch=1)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDBENCH_")}
    spared = subprocess.run([sys.executable, "-c", script, str(tmp_path / "spared"), "",
                             "elsewhere", "epoch:component=mono", "epoch:component=kd,epoch=0",
                             "epoch:component=kd,epoch=1,job=x"], env=env)
    assert spared.returncode == 0 and (tmp_path / "spared").read_text() == "clean exit"
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "killed"),
                             "elsewhere", "epoch: component = kd, epoch=1"], env=env,
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL and not (tmp_path / "killed").exists()
    assert "fault injected at epoch {'component': 'kd', 'epoch': '1'}" in killed.stderr


def test_the_kill_points_documented_are_those_in_the_code():
    import re

    from helpers import ROOT

    code = set()
    for path in [*ROOT.glob("kdbench/**/*.py"), *ROOT.glob("plugins/**/*.py")]:
        code |= set(re.findall(r'fault_point\("(\w+)"', path.read_text(encoding="utf-8")))
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    table = text.split("## Kill points")[1].split("\n## ")[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.M))
    assert code == documented == {"epoch", "checkpoint", "predict", "score", "record"}

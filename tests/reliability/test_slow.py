"""The long variants (``pytest -m slow tests/reliability``): every kill point on its own, kills at
random times until the grid finishes, three runners on fresh data, and the demo protocol run
twice from fresh folders (determinism)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest
from helpers import DEMO
from reliability.grid import (
    complete_runs,
    kdbench,
    per_case_bytes,
    run_args,
    runs_by_job,
    tmpfs,
)

from kdbench.engine.execute import ExecutionSettings
from kdbench.engine.job import job_dir
from kdbench.tracking import COMPLETE, STATUS

pytestmark = pytest.mark.slow

#: Kill points the default suite's chain does not reach (test_faults.FAULTS has the others).
POINTS = [
    "epoch:component=multi,epoch=0",
    "checkpoint:component=mono,file=checkpoint_best.pth",
    "checkpoint:component=kd,file=checkpoint_final.pth",
    "predict:component=mono",
    "score:component=multi",
    "score:component=kd",
    "record:component=mono",
]


def _same_as_reference(grid, settings, tmp_path, attempts=None):
    """One complete run per Job, every other attempt KILLED, the reference's per-case tables."""
    runs = runs_by_job(grid.plan, settings.tracking_uri)
    complete = complete_runs(grid.plan, settings.tracking_uri)
    reference = complete_runs(grid.plan, grid.reference.tracking_uri)
    for job in grid.plan.jobs:
        assert len(complete[job.id]) == 1, job.component
        assert {r.info.status for r in runs[job.id]
                if r.data.tags.get(STATUS) != COMPLETE} <= {"KILLED"}, job.component
        assert per_case_bytes(grid.plan, settings.tracking_uri, complete[job.id][0],
                              tmp_path / "ours" / job.id) == \
            per_case_bytes(grid.plan, grid.reference.tracking_uri, reference[job.id][0],
                           tmp_path / "ref" / job.id), job.component
    if attempts is not None:
        assert sum(len(r) for r in runs.values()) == attempts


@pytest.mark.parametrize("fault", POINTS)
def test_each_kill_point_then_a_rerun(grid, tmp_path, fault):
    settings = grid.settings(tmp_path)
    proc = kdbench(*run_args(settings), env={"KDBENCH_FAULT": fault},
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.communicate(timeout=1800)[0]
    assert proc.returncode == -signal.SIGKILL, output[-3000:]
    proc = kdbench(*run_args(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.communicate(timeout=1800)[0]
    assert proc.returncode == 0, output[-3000:]
    _same_as_reference(grid, settings, tmp_path, attempts=4)  # 3 Jobs, one killed once


def test_killed_at_random_times_until_the_grid_finishes(grid, tmp_path):
    """SIGKILL to the whole process group after 2-40 s (seeded), again and again, on a fresh
    data folder too; print how many kills it took."""
    settings = grid.settings(tmp_path, data_dir=tmp_path / "data")
    draw = random.Random(13)
    kills = 0
    for _ in range(60):
        proc = kdbench(*run_args(settings), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=draw.uniform(2, 40))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0
        break
    else:
        pytest.fail("the grid never finished")
    print(f"{kills} kills at random times before the grid finished")
    assert kills >= 3
    _same_as_reference(grid, settings, tmp_path)


def test_three_runners_on_fresh_data_run_every_job_once(grid, tmp_path):
    settings = grid.settings(tmp_path, data_dir=tmp_path / "data")
    procs = [kdbench(*run_args(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(3)]
    outputs = [p.communicate(timeout=3600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[-2000:] for o in outputs]
    _same_as_reference(grid, settings, tmp_path, attempts=3)  # no Job started twice
    assert any("is being prepared by another process" in o for o in outputs)


def test_the_demo_twice_from_fresh_folders_is_identical(tmp_path, registry):
    """``protocols/demo.yaml`` itself, twice (each about 7 minutes on 2 cores): the same splits
    file, Job ids and per-case tables."""
    from kdbench.plan import build_plan
    from kdbench.protocol import load_protocol

    plan = build_plan(load_protocol(DEMO, registry), registry)
    settings = [ExecutionSettings(DEMO, tmp_path / name / "data", tmp_path / name / "runs",
                            f"sqlite:///{tmp_path / name / 'mlruns' / 'mlflow.db'}")
                for name in ("first", "second")]
    for s in settings:
        started = time.monotonic()
        proc = kdbench(*run_args(s, "--executor", "local", "--jobs", "2"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = proc.communicate(timeout=3600)[0]
        assert proc.returncode == 0, output[-3000:]
        print(f"demo run in {time.monotonic() - started:.0f} s")
    splits = [sorted(s.data_dir.glob("*/splits/split-*.json")) for s in settings]
    assert len(splits[0]) == 1 and [p.name for p in splits[0]] == [p.name for p in splits[1]]
    assert splits[0][0].read_bytes() == splits[1][0].read_bytes()
    complete = [complete_runs(plan, s.tracking_uri) for s in settings]
    assert all(len(c[job.id]) == 1 for c in complete for job in plan.jobs)
    for job in plan.jobs:
        tables = [per_case_bytes(plan, s.tracking_uri, c[job.id][0], tmp_path / str(i) / job.id)
                  for i, (s, c) in enumerate(zip(settings, complete, strict=True))]
        assert tables[0] == tables[1], job.component
        done = [json.loads((job_dir(s.runs_dir, plan, job) / "done.json").read_text())
                for s in settings]
        assert done[0]["train_cases"] == done[1]["train_cases"]


def test_a_disk_full_mid_job_is_one_message_and_a_rerun_finishes(grid, tmp_path):
    """The runs folder on a small tmpfs (root only): the runner is stopped after the
    predictions, the disk filled, the runner continued: one message naming the Job and the
    folder, the run FAILED; with space again, the same command finishes the Job as the
    reference did."""
    import contextlib
    from pathlib import Path

    with tmpfs(tmp_path / "disk", "64m") as disk:
        settings = ExecutionSettings(grid.protocol, grid.data_dir, disk / "runs",
                               f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
        log = tmp_path / "runner.log"
        proc = kdbench(*run_args(settings, "--only", "mono"),
                       env={"KDBENCH_FAULT": "predict:component=mono",
                            "KDBENCH_FAULT_SIGNAL": "STOP"},
                       stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        deadline = time.monotonic() + 900
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with contextlib.suppress(OSError), open(disk / "filler", "wb", buffering=0) as filler:
            while True:
                filler.write(b"\0" * 65536)
        proc.send_signal(signal.SIGCONT)
        assert proc.wait(timeout=600) != 0
        output = " ".join(log.read_text().split())  # as one line, however rich wrapped it
        mono = next(j for j in grid.plan.jobs if j.component == "mono")
        assert f"Job {mono.id} (mono): No space left on device" in output, output[-3000:]
        assert "then run again" in output and "Traceback" not in output
        runs = runs_by_job(grid.plan, settings.tracking_uri)[mono.id]
        assert [r.info.status for r in runs] == ["FAILED"]
        (disk / "filler").unlink()
        again = kdbench(*run_args(settings, "--only", "mono"), stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT)
        output = again.communicate(timeout=900)[0]
        assert again.returncode == 0, output[-3000:]
        complete = complete_runs(grid.plan, settings.tracking_uri)[mono.id]
        reference = complete_runs(grid.plan, grid.reference.tracking_uri)[mono.id]
        assert len(complete) == 1
        assert per_case_bytes(grid.plan, settings.tracking_uri, complete[0], tmp_path / "a") == \
            per_case_bytes(grid.plan, grid.reference.tracking_uri, reference[0], tmp_path / "b")

"""Several ``kdbench run`` processes on one protocol at once (SQLite MLflow, one machine): a Job
runs in one of them at a time, is recorded once, and a holder killed mid-Job is resumed by the
next one (the kernel releases its lock file)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from reliability.grid import complete_runs, kdbench, per_case_bytes, run_args, runs_by_job

from kdbench.engine.job import job_dir
from kdbench.engine.lock import LOCK_FILE
from kdbench.tracking import COMPLETE, STATUS


def _state(pid: int) -> str:
    """The process state letter of ``/proc/PID/stat`` (``T``: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait(condition, what: str, procs, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [p for p in procs if p.poll() is not None]
        assert not dead, f"waiting for {what}: a process ended (exit {dead[0].returncode})"
        assert time.monotonic() < deadline, f"waiting for {what}: timed out"
        time.sleep(0.05)


def _start(settings, log: Path, env=None):
    return kdbench(*run_args(settings, "--only", "mono"), env=env,
                   stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_three_runners_one_killed_holder_each_job_runs_once(grid, tmp_path):
    settings = grid.settings(tmp_path)
    mono = next(j for j in grid.plan.jobs if j.component == "mono")
    folder = job_dir(settings.runs_dir, grid.plan, mono)
    logs = [tmp_path / f"runner{i}.log" for i in range(3)]
    # the first runner stops itself mid-Job (epoch 1 logged, epoch 0's checkpoint on disk),
    # holding the Job's lock; the two others start while it holds it
    first = _start(settings, logs[0], {"KDBENCH_FAULT": "epoch:component=mono,epoch=1",
                                       "KDBENCH_FAULT_SIGNAL": "STOP"})
    _wait(lambda: _state(first.pid) == "T", "the first runner to stop mid-Job", [first])
    holder = json.loads((folder / LOCK_FILE).read_text())
    assert holder["pid"] == first.pid
    others = [_start(settings, log) for log in logs[1:]]
    waiting = f"Job {mono.id} is being run by another process"
    _wait(lambda: all(waiting in log.read_text() for log in logs[1:]),
          "both others to wait for the lock", others)
    first.send_signal(signal.SIGKILL)  # the holder dies: the kernel releases its lock
    first.wait()
    for proc in others:
        assert proc.wait(timeout=900) == 0, logs[others.index(proc) + 1].read_text()[-3000:]
    assert first.returncode == -signal.SIGKILL

    runs = runs_by_job(grid.plan, settings.tracking_uri)[mono.id]
    complete = complete_runs(grid.plan, settings.tracking_uri)[mono.id]
    assert len(complete) == 1 and len(runs) == 2  # the killed attempt and one other
    killed = next(r for r in runs if r.data.tags.get(STATUS) != COMPLETE)
    assert killed.info.status == "KILLED"
    assert killed.info.end_time <= complete[0].info.start_time  # never both at once
    done = json.loads((folder / "done.json").read_text())
    assert done["resumed_from_epoch"] == 1  # resumed from the killed holder's checkpoint
    assert (folder / LOCK_FILE).read_text() == ""  # released
    reference = complete_runs(grid.plan, grid.reference.tracking_uri)[mono.id][0]
    assert per_case_bytes(grid.plan, settings.tracking_uri, complete[0], tmp_path / "a") == \
        per_case_bytes(grid.plan, grid.reference.tracking_uri, reference, tmp_path / "b")

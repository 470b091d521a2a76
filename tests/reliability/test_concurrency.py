"""Several ``kdbench run`` processes on one protocol at once (SQLite MLflow, one machine): a Job
runs in one of them at a time, is recorded once, and a holder killed mid-Job is resumed by the
next one (the kernel releases its lock file)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT
from reliability.grid import complete_runs, kdbench, per_case_bytes, run_args, runs_by_job

from kdbench.engine.job import job_dir
from kdbench.engine.lock import LOCK_FILE
from kdbench.tracking import COMPLETE, STATUS, mlflow_client


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


OPEN = """
import sys
from kdbench.tracking import mlflow_client
client = mlflow_client(sys.argv[1])
client.create_experiment(sys.argv[2])
print(len(client.search_experiments()))
"""


def test_runners_opening_a_fresh_mlflow_database_at_once(tmp_path):
    """MLflow migrates a new SQLite file when its first client opens it, without a lock: three
    processes at once left two failed and the file half-migrated (found by this suite); the
    lock beside the file makes them wait for the first one's tables."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, uri, f"e{i}"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    names = {e.name for e in mlflow_client(uri).search_experiments()}
    assert {"e0", "e1", "e2"} <= names


def test_where_job_claims_are_taken(monkeypatch):
    """Across hosts, Jobs are claimed in PostgreSQL: KDBENCH_CLAIMS, else a PostgreSQL tracking
    URI, else nowhere (the lock file alone); the key is the Job id's 64 bits."""
    from kdbench.engine.claims import claim_key, claims_url
    from kdbench.errors import KdbenchError

    monkeypatch.delenv("KDBENCH_CLAIMS", raising=False)
    assert claims_url("sqlite:///x.db") is None and claims_url("http://host:5000") is None
    pg = "postgresql+psycopg://u:secret@h:5432/db"
    assert claims_url(pg) == pg
    monkeypatch.setenv("KDBENCH_CLAIMS", "postgresql://u:p@h/claims")
    assert claims_url("sqlite:///x.db") == "postgresql://u:p@h/claims"
    monkeypatch.setenv("KDBENCH_CLAIMS", "mysql://u:secret@h/db")
    with pytest.raises(KdbenchError, match=r"KDBENCH_CLAIMS=mysql://u:\*\*\*@h/db: Job claims "
                       "need a PostgreSQL URL"):
        claims_url(None)
    assert claim_key("0000000000000001") == 1 and claim_key("ffffffffffffffff") == -1
    assert claim_key("7fffffffffffffff") == 2**63 - 1

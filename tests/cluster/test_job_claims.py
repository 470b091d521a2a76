"""Job claims in PostgreSQL (kdbench.engine.claims): what serialises a Job's runners across
hosts, where a lock file on a shared folder may not. A waiting process is told who holds the
claim; a killed holder's claim is released by the server; a claim lost mid-Job stops the Job
before its record; two runners that share no lock file (their own runs folders, as two hosts
whose file system ignores flock) run each Job once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, phantom_protocol
from reliability.grid import TINY_BACKBONE, runs_by_job

from kdbench.engine.claims import job_claim
from kdbench.errors import KdbenchError
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.tracking import COMPLETE, STATUS

pytestmark = pytest.mark.cluster

JOB = "0123456789abcdef"
HOLD = """
import sys, time
from pathlib import Path
from kdbench.engine.claims import job_claim
with job_claim(sys.argv[1], sys.argv[2]):
    Path(sys.argv[3]).write_text("held")
    time.sleep(600)
"""


@pytest.fixture
def claims(postgres_database):
    return postgres_database("claims")


def _holder(url, flag):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, url, JOB, str(flag)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def test_a_waiting_process_is_told_who_holds_it_and_a_killed_holder_frees_it(claims, tmp_path):
    proc = _holder(claims, tmp_path / "flag")
    messages = []
    try:
        import threading

        def kill_soon():
            time.sleep(2)
            os.kill(proc.pid, signal.SIGKILL)

        threading.Thread(target=kill_soon, daemon=True).start()
        started = time.monotonic()
        with job_claim(claims, JOB, poll=0.2, wait_message=messages.append):
            waited = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    assert 1.5 < waited < 30  # entered once the server saw the holder's socket close
    assert len(messages) == 1 and f"Job {JOB} is claimed by another process" in messages[0]
    assert f"pid {proc.pid}" in messages[0] and "127.0.0.1" in messages[0]


def test_a_claim_lost_mid_job_stops_it_before_the_record(claims):
    import psycopg

    from kdbench.engine.claims import _libpq

    with job_claim(claims, JOB) as claim:
        claim.check()
        backend = claim.connection.execute("select pg_backend_pid()").fetchone()[0]
        with psycopg.connect(_libpq(claims), autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s)", (backend,))
        with pytest.raises(KdbenchError, match=f"Job {JOB}: the connection holding its claim"):
            claim.check()
    with job_claim(claims, JOB, poll=0.2) as again:  # and it is free for the next one
        again.check()


def test_runners_sharing_no_lock_file_run_each_job_once(claims, prepared_phantom, registry,
                                                         tmp_path):
    protocol = phantom_protocol(
        tmp_path, "claims",
        dataset={"source": "brats", "path": str(prepared_phantom.marker["source"]),
                 "name": prepared_phantom.path.name},
        backbone=TINY_BACKBONE)
    plan = build_plan(load_protocol(protocol, registry), registry)
    mlflow = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KDBENCH_")},
           "KDBENCH_CLAIMS": claims}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "kdbench", "run", str(protocol), "--only", "mono",
         "--data-dir", str(prepared_phantom.path.parent), "--runs-dir",
         str(tmp_path / f"host{i}"), "--tracking-uri", mlflow],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    mono = next(j for j in plan.jobs if j.component == "mono")
    runs = runs_by_job(plan, mlflow)[mono.id]
    assert [r.data.tags.get(STATUS) for r in runs] == [COMPLETE]  # one attempt, complete
    assert sum(f"Job {mono.id} is claimed by another process" in o for o in outputs) == 1
    trained = [i for i in range(2) if (tmp_path / f"host{i}" / "claims" / mono.id /
                                       "done.json").exists()]
    assert len(trained) == 1
    assert json.loads((tmp_path / f"host{trained[0]}" / "claims" / mono.id / "done.json")
                      .read_text())["job"] == mono.id

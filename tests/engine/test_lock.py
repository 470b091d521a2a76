"""The per-Job lock: a second process waits for the first; a killed holder frees it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from kdbench.engine.lock import LOCK_FILE, job_lock

HOLD = """
import sys, time
from pathlib import Path
from kdbench.engine.lock import job_lock
with job_lock(Path(sys.argv[1]), "J"):
    Path(sys.argv[2]).write_text("held")
    time.sleep(float(sys.argv[3]))
"""


def _hold(folder, flag, seconds):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(flag), str(seconds)])
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def test_second_holder_waits_and_is_told_who_holds_the_lock(tmp_path):
    proc = _hold(tmp_path / "job", tmp_path / "flag", 1.5)
    holder = json.loads((tmp_path / "job" / LOCK_FILE).read_text())
    assert holder["pid"] == proc.pid
    messages = []
    started = time.monotonic()
    with job_lock(tmp_path / "job", "J", poll=0.1, wait_message=messages.append):
        assert time.monotonic() - started > 0.5  # entered only after the other one left
        assert proc.wait(timeout=30) == 0
        assert json.loads((tmp_path / "job" / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert len(messages) == 1 and f"'pid': {proc.pid}" not in messages[0]
    assert f'"pid": {proc.pid}' in messages[0] and "Job J" in messages[0]
    assert (tmp_path / "job" / LOCK_FILE).read_text() == ""  # released and cleared


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    proc = _hold(tmp_path / "job", tmp_path / "flag", 600)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    with job_lock(tmp_path / "job", "J", poll=0.1, wait_message=lambda m: None):
        pass
    assert time.monotonic() - started < 5

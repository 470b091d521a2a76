"""One process at a time per Job: an exclusive lock file in the Job's folder.

Two submissions of the same grid (a resubmitted SLURM array while the first still runs, two
tuning workers needing the same teacher) must not train one Job twice or leave two complete
records. ``execute_job`` holds ``runs/<protocol>/<job id>/job.lock`` while it trains and
records; a second process waits for it, then finds the Job complete and returns at once.

The lock is ``flock(2)`` on an open file: the kernel releases it when the holder dies (killed,
preempted, out of memory), so no stale lock survives a crash. On NFS, Linux maps ``flock`` to
NFS byte-range locks (NFSv4, or NFSv3 with lockd); see docs/cluster.md. Across hosts whose
shared file system does not lock, a PostgreSQL claim is taken as well (``kdbench.engine.claims``,
docs/reliability.md). The file also holds who has it (host, pid, SLURM job), printed while
waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_FILE = "job.lock"


def holder() -> dict[str, object]:
    """Who this process is: host, pid and SLURM job, when there is one."""
    slurm = os.environ.get("SLURM_ARRAY_JOB_ID")
    if slurm:
        slurm = f"{slurm}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "slurm_job": slurm or os.environ.get("SLURM_JOB_ID"), "since": time.time()}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def file_lock(path: Path, what: str, *, poll: float = 5.0,
              wait_message: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block, recording this process in it;
    while another process has it, wait, saying once ``what`` (e.g. "Job J is being run by
    another process") and who holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    handle.seek(0)
                    wait_message(f"{what} ({handle.read().strip() or 'unknown holder'}); "
                                 "waiting for it")
                    told = True
                time.sleep(poll)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(holder()))
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def job_lock(folder: Path, job_id: str, *, poll: float = 5.0,
             wait_message: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold the Job's lock for the block; wait (reporting once who holds it) while another
    process has it."""
    with file_lock(folder / LOCK_FILE, f"Job {job_id} is being run by another process",
                   poll=poll, wait_message=wait_message):
        yield


def is_held(folder: Path) -> bool:
    """Whether a process holds the Job's lock now (a run left RUNNING by a killed process
    has none)."""
    path = folder / LOCK_FILE
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False

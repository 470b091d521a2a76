"""The ``local`` executor: each Job in its own process; on a machine with several GPUs, one
Job per GPU at a time (``CUDA_VISIBLE_DEVICES``), otherwise ``--jobs`` at a time, the CPU cores
shared between them (``OMP_NUM_THREADS``, unless already set)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence

from kdbench import Executor, JobLauncher, KdbenchError, hookimpl


def visible_gpus() -> list[str]:
    """GPU indices this machine offers (``CUDA_VISIBLE_DEVICES`` respected), without torch."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def cpu_threads(parallel: int) -> str:
    """Threads per Job when ``parallel`` Jobs share this machine's CPU cores (at least 1):
    each process would otherwise start one thread per core, oversubscribing them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return str(max(1, (cores or 1) // max(1, parallel)))


class LocalExecutor(Executor):
    """Runs Jobs as subprocesses (``kdbench job run``), a wave at a time."""

    name = "local"
    version = "1"

    def execute(self, waves: Sequence[Sequence], launcher: JobLauncher,
                max_parallel: int = 1) -> None:
        gpus = visible_gpus()
        slots = gpus if gpus else [None] * max(1, max_parallel)
        threads = cpu_threads(len(slots))
        failed = []
        for wave in waves:
            pending = list(wave)
            running: dict[subprocess.Popen, tuple] = {}
            free = list(slots)
            while pending or running:
                while pending and free:
                    job, slot = pending.pop(0), free.pop(0)
                    env = dict(os.environ)
                    env.setdefault("OMP_NUM_THREADS", threads)
                    if slot is not None:
                        env["CUDA_VISIBLE_DEVICES"] = slot
                    launcher.started(job)
                    running[subprocess.Popen(launcher.command(job), env=env)] = (job, slot)
                for proc in [p for p in running if p.poll() is not None]:
                    job, slot = running.pop(proc)
                    free.append(slot)
                    launcher.finished(job, proc.returncode == 0)
                    if proc.returncode != 0:
                        failed.append(job.id)
                time.sleep(0.2)
            if failed:
                raise KdbenchError(f"{len(failed)} Job(s) failed: {', '.join(failed)}; "
                                   "their logs are above; rerun to resume")


@hookimpl
def kdbench_register_executors(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``local``."""
    registry.add(LocalExecutor)

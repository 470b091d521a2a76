"""The ``local`` executor: each Job in its own process; on a machine with GPUs, ``jobs_per_gpu``
Jobs per GPU at a time (``CUDA_VISIBLE_DEVICES``), otherwise ``--jobs`` at a time, the CPU cores
shared between them (``OMP_NUM_THREADS``, unless already set).

Options (protocol ``executors.local`` or a ``--profile`` file): ``jobs_per_gpu`` (1, a number,
or ``auto``: as many Jobs as fit in 90 % of each GPU's memory at ``job_memory_gib`` each, at
most ``max_jobs_per_gpu``), ``job_memory_gib`` (a Job's peak GPU memory: about 5 GiB for
nnU-Net's BraTS network under AMP), ``max_jobs_per_gpu``.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from pydantic import Field

from kdbench import Executor, ExecutorOptions, JobLauncher, KdbenchError, hookimpl

#: Share of a GPU's memory that ``jobs_per_gpu: auto`` fills.
MEMORY_HEADROOM = 0.9


class LocalOptions(ExecutorOptions):
    """Options of the ``local`` executor."""

    jobs_per_gpu: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1, description="Jobs sharing one GPU at a time (>= 1), or auto: from the GPU's memory "
        "and job_memory_gib")
    job_memory_gib: float = Field(
        5.0, gt=0, description="peak GPU memory of one Job (nnU-Net's BraTS network under AMP: "
        "about 5 GiB)")
    max_jobs_per_gpu: int = Field(4, ge=1, description="the most Jobs auto puts on one GPU")


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


def gpu_memory_gib() -> dict[str, float]:
    """Total memory of each GPU in GiB, by index and by UUID (``nvidia-smi``; empty without)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,memory.total",
                              "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {}
    memory = {}
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[2].replace(".", "", 1).isdigit():
            gib = float(parts[2]) / 1024  # MiB
            memory[parts[0]] = memory[parts[1]] = gib
    return memory


def gpu_slots(gpus: Sequence[str], options: LocalOptions,
              memory_gib: Mapping[str, float] | None = None) -> list[str]:
    """One entry per Job that may run at once: each GPU repeated as many times as Jobs share
    it, interleaved (``0, 1, 0, 1``) so that Jobs spread over the GPUs before doubling up.

    With ``jobs_per_gpu: auto`` a GPU takes ``floor(0.9 x memory / job_memory_gib)`` Jobs (at
    least 1, at most ``max_jobs_per_gpu``); a GPU of unknown memory takes 1.
    """
    per_gpu = []
    for gpu in gpus:
        if options.jobs_per_gpu != "auto":
            per_gpu.append(max(1, int(options.jobs_per_gpu)))
            continue
        memory = (memory_gib or {}).get(gpu.strip())
        fits = 1 if memory is None else math.floor(MEMORY_HEADROOM * memory
                                                   / options.job_memory_gib)
        per_gpu.append(min(max(1, fits), options.max_jobs_per_gpu))
    return [gpu.strip() for round_ in range(max(per_gpu, default=0))
            for gpu, count in zip(gpus, per_gpu, strict=True) if round_ < count]


def cpu_threads(parallel: int) -> str:
    """Threads per Job when ``parallel`` Jobs share this machine's CPU cores (at least 1):
    each process would otherwise start one thread per core, oversubscribing them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return str(max(1, (cores or 1) // max(1, parallel)))


class LocalExecutor(Executor):
    """Runs Jobs as subprocesses (``kdbench job run``), a wave at a time."""

    name = "local"
    version = "1"
    Options = LocalOptions

    def execute(self, waves: Sequence[Sequence], launcher: JobLauncher,
                max_parallel: int = 1) -> None:
        options: LocalOptions = self.options  # type: ignore[assignment]
        gpus = visible_gpus()
        memory = gpu_memory_gib() if gpus and options.jobs_per_gpu == "auto" else {}
        slots: list[str | None] = (list(gpu_slots(gpus, options, memory)) if gpus
                                   else [None] * max(1, max_parallel))
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

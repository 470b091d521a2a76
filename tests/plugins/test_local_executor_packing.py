"""Several Jobs per GPU in the local executor: the slot assignment (a pure function) and the
``CUDA_VISIBLE_DEVICES`` each Job's process receives. Only the device query is faked (no GPU
here): the processes are real."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from kdbench_plugins import local_executor
from kdbench_plugins.local_executor import LocalExecutor, LocalOptions, gpu_slots


@dataclass(frozen=True)
class FakeJob:
    id: str


class Launcher:
    """Each Job's process writes the GPU and threads it was given."""

    def __init__(self, folder):
        self.folder = folder

    def command(self, job):
        code = ("import json, os; json.dump({'gpu': os.environ.get('CUDA_VISIBLE_DEVICES'), "
                "'omp': os.environ.get('OMP_NUM_THREADS')}, "
                f"open({str(self.folder / job.id)!r}, 'w'))")
        return [sys.executable, "-c", code]

    def started(self, job):
        pass

    def finished(self, job, ok):
        assert ok


def test_slots_repeat_each_gpu_interleaved():
    assert gpu_slots(["0", "1"], LocalOptions()) == ["0", "1"]
    assert gpu_slots(["0", "1"], LocalOptions(jobs_per_gpu=2)) == ["0", "1", "0", "1"]
    assert gpu_slots([], LocalOptions(jobs_per_gpu=3)) == []


def test_auto_fits_jobs_in_each_gpus_memory():
    memory = {"0": 80.0, "1": 24.0, "GPU-abc": 12.0}
    auto = LocalOptions(jobs_per_gpu="auto", job_memory_gib=5.0)
    # 0.9 x 80 / 5 = 14 -> capped at 4; 0.9 x 24 / 5 = 4.3 -> 4; 0.9 x 12 / 5 = 2.2 -> 2
    assert Counter(gpu_slots(["0", "1", "GPU-abc"], auto, memory)) == {
        "0": 4, "1": 4, "GPU-abc": 2}
    big = LocalOptions(jobs_per_gpu="auto", job_memory_gib=20.0, max_jobs_per_gpu=8)
    assert gpu_slots(["0", "1"], big, memory) == ["0", "1", "0", "0"]  # 3 and 1
    assert gpu_slots(["7"], auto, memory) == ["7"]  # memory unknown: one Job


def test_options_are_checked():
    assert LocalExecutor.validate_options({"jobs_per_gpu": "auto"}).jobs_per_gpu == "auto"
    for bad in ({"jobs_per_gpu": 0}, {"jobs_per_gpu": "many"}, {"job_memory_gib": 0},
                {"gpus": 2}):
        with pytest.raises(ValidationError):
            LocalExecutor.validate_options(bad)


def test_jobs_share_gpus_through_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(local_executor, "visible_gpus", lambda: ["0", "1"])
    monkeypatch.setattr(local_executor, "gpu_memory_gib", lambda: {"0": 40.0, "1": 40.0})
    monkeypatch.setattr(local_executor.os, "sched_getaffinity", lambda pid: set(range(8)),
                        raising=False)
    options = LocalExecutor.validate_options({"jobs_per_gpu": "auto", "job_memory_gib": 15})
    jobs = [FakeJob(f"j{i}") for i in range(4)]
    LocalExecutor(options).execute([jobs], Launcher(tmp_path), max_parallel=1)
    seen = [json.loads((tmp_path / job.id).read_text()) for job in jobs]
    # 0.9 x 40 / 15 = 2 Jobs per GPU, all four at once, the 8 cores shared by 4
    assert Counter(s["gpu"] for s in seen) == {"0": 2, "1": 2}
    assert {s["omp"] for s in seen} == {"2"}

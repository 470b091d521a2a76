"""The local executor: waves in order, Jobs in parallel, CPU cores shared between them."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdbench.errors import KdbenchError
from kdbench_plugins import local_executor
from kdbench_plugins.local_executor import LocalExecutor, cpu_threads


@dataclass(frozen=True)
class FakeJob:
    id: str


class Launcher:
    """Each Job's process writes its id, start order and OMP_NUM_THREADS to a file."""

    def __init__(self, folder: Path, fail: str = ""):
        self.folder, self.fail, self.events = folder, fail, []

    def command(self, job):
        code = (f"import json, os, sys; json.dump({{'omp': os.environ.get('OMP_NUM_THREADS')}},"
                f" open({str(self.folder / job.id)!r}, 'w')); "
                f"sys.exit({1 if job.id == self.fail else 0})")
        return [sys.executable, "-c", code]

    def started(self, job):
        self.events.append(("start", job.id))

    def finished(self, job, ok):
        self.events.append(("end", job.id, ok))


def test_cores_are_shared_between_parallel_jobs(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(local_executor, "visible_gpus", lambda: [])
    monkeypatch.setattr(local_executor.os, "sched_getaffinity", lambda pid: set(range(4)),
                        raising=False)
    assert (cpu_threads(1), cpu_threads(2), cpu_threads(3), cpu_threads(8)) == ("4", "2", "1",
                                                                              "1")
    launcher = Launcher(tmp_path)
    waves = [[FakeJob("a"), FakeJob("b")], [FakeJob("c")]]
    LocalExecutor().execute(waves, launcher, max_parallel=2)
    assert {p.name: json.loads(p.read_text())["omp"] for p in tmp_path.iterdir()} == {
        "a": "2", "b": "2", "c": "2"}
    # the second wave starts only when the first has ended
    ends_of_first = max(i for i, e in enumerate(launcher.events) if e[0] == "end"
                        and e[1] in "ab")
    assert launcher.events.index(("start", "c")) > ends_of_first


def test_a_users_thread_setting_wins_and_failures_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(local_executor, "visible_gpus", lambda: [])
    launcher = Launcher(tmp_path, fail="b")
    with pytest.raises(KdbenchError, match="1 Job\\(s\\) failed: b"):
        LocalExecutor().execute([[FakeJob("a"), FakeJob("b")], [FakeJob("c")]], launcher,
                                max_parallel=2)
    assert json.loads((tmp_path / "a").read_text())["omp"] == "3"
    assert not (tmp_path / "c").exists()  # a failed wave stops before the next one

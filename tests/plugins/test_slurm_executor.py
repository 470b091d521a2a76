"""The ``slurm`` executor without a cluster: the sbatch script its options make, its tasks
through submitit's local executor (waves in order, records, failures named), and executor
options in protocols and profile files. The real SLURM tests are in tests/cluster/."""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kdbench.errors import KdbenchError, ProtocolError
from kdbench.protocol import load_protocol
from kdbench.protocol.profile import executor_options
from kdbench_plugins.slurm_executor import (
    JobTask,
    SlurmExecutor,
    SlurmOptions,
    Submissions,
    _last_line,
)


@dataclass(frozen=True)
class FakeJob:
    id: str
    component: str = "mono"
    n: int = 6
    seed: int = 0


class Launcher:
    """Each Job's command writes its id to a file (or fails for ``fail``)."""

    def __init__(self, folder: Path, fail: str = "", state: Path | None = None):
        self.folder, self.fail, self.events, self.notes = folder, fail, [], []
        self.state = state or folder / "state"

    def command(self, job):
        code = (f"import sys, time; open({str(self.folder / job.id)!r}, 'w').write(str("
                f"time.time())); sys.exit({3 if job.id == self.fail else 0})")
        return [sys.executable, "-c", code]

    def started(self, job):
        self.events.append(("start", job.id))

    def finished(self, job, ok):
        self.events.append(("end", job.id, ok))

    def note(self, text):
        self.notes.append(text)

    @property
    def state_dir(self):
        return self.state


def test_options_make_the_sbatch_script(tmp_path, monkeypatch):
    from submitit.slurm.slurm import _make_sbatch_string

    # submitit's executor refuses to exist without an srun on PATH; this test only renders
    # the sbatch script, so a stand-in is enough (the cluster tests use a real SLURM).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    options = SlurmOptions(partition="gpu", account="lab42", time_min=540, gpus_per_node=1,
                           cpus_per_task=8, mem_gb=32, array_parallelism=5,
                           setup=["module load cuda/12.4"], additional={"constraint": "a100"})
    executor = SlurmExecutor._executor(tmp_path, options)
    executor.update_parameters(dependency="afterok:17")
    text = _make_sbatch_string(command="python -m x", folder=tmp_path / "%j", map_count=12,
                               **executor.parameters)
    for line in ("--partition=gpu", "--account=lab42", "--time=540", "--gpus-per-node=1",
                 "--cpus-per-task=8", "--mem=32768M", "--array=0-11%5", "--signal=USR2@120",
                 "--dependency=afterok:17", "--kill-on-invalid-dep=yes", "--constraint=a100",
                 "--job-name=kdbench"):
        assert f"#SBATCH {line}\n" in text, line
    assert "module load cuda/12.4" in text


def test_task_pickles_and_checkpoint_requeues_the_same_job(tmp_path):
    task = JobTask(str(tmp_path))
    again = pickle.loads(pickle.dumps(task))
    assert again.cwd == str(tmp_path)
    delayed = again.checkpoint("abc", ["true"])
    assert isinstance(delayed.function, JobTask) and delayed.args == ("abc", ["true"])
    assert task(job_id="x", command=[sys.executable, "-c", "pass"]) == "x"
    with pytest.raises(RuntimeError, match="Job y: `kdbench job run` exited with 4"):
        task("y", [sys.executable, "-c", "import sys; sys.exit(4)"])


def test_waves_run_in_order_through_submitit_and_failures_are_named(tmp_path):
    launcher = Launcher(tmp_path, fail="b")
    executor = SlurmExecutor(SlurmOptions(cluster="local", poll_s=0.2, time_min=5))
    with pytest.raises(KdbenchError) as raised:
        executor.execute([[FakeJob("a"), FakeJob("b")], [FakeJob("c")]], launcher)
    message = str(raised.value)
    assert "1 Job(s) failed" in message and "b (mono N=6 seed 0)" in message
    assert "exited with 3" in message and "_log.err" in message
    assert "rerun the same command" in message
    assert (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # wave 2 never ran
    rows = [json.loads(line) for line in
            (tmp_path / "state" / "submissions.jsonl").read_text().splitlines()]
    assert [r["job_id"] for r in rows] == ["a", "b"] and {r["wave"] for r in rows} == {0}
    assert launcher.events[-2:] in ([("end", "a", True), ("end", "b", False)],
                                    [("end", "b", False), ("end", "a", True)])

    launcher = Launcher(tmp_path / "ok", state=tmp_path / "state")
    (tmp_path / "ok").mkdir()
    assert executor.execute([[FakeJob("a"), FakeJob("b")], [FakeJob("c")]], launcher) is False
    assert float((tmp_path / "ok" / "c").read_text()) >= max(
        float((tmp_path / "ok" / j).read_text()) for j in "ab")
    assert len(launcher.notes) == 2
    assert re.match(r"wave 1: 2 Job\(s\) submitted as array \d+ \(logs: ", launcher.notes[0])
    assert re.match(r"wave 2: 1 Job\(s\) submitted as array \d+ \(logs: ", launcher.notes[1])
    # the earlier (ended) submissions of a and b did not stop them from being submitted again
    assert len((tmp_path / "state" / "submissions.jsonl").read_text().splitlines()) == 2 + 3


def test_a_torn_record_line_is_named(tmp_path):
    records = Submissions(tmp_path)
    records.add([{"job_id": "a", "slurm_id": "1_0"}])
    with open(records.path, "a") as handle:
        handle.write('{"job_id": "b", "slu\n')
    with pytest.raises(KdbenchError, match="submissions.jsonl line 2 is not JSON"):
        records.latest()


def test_the_error_a_task_ended_with():
    wrapped = ("Job (task=0) failed during processing with trace:\n----\nTraceback (most "
               "recent call last):\n  File x\nRuntimeError: Job j: `kdbench job run` exited "
               "with 1\n\nYou can check full logs with 'job.stderr(0)'\n  - /a/b.err")
    assert _last_line(RuntimeError(wrapped)) == ("RuntimeError: Job j: `kdbench job run` "
                                                 "exited with 1")
    assert _last_line(RuntimeError("")) == "RuntimeError"


def _with_executors(demo_data, write_protocol, executors):
    demo_data["executors"] = executors
    return write_protocol(demo_data)


def test_protocol_executor_options_are_checked(demo_data, write_protocol, registry):
    path = _with_executors(demo_data, write_protocol,
                           {"slurm": {"partitio": "gpu"}, "slrum": {}})
    with pytest.raises(ProtocolError) as raised:
        load_protocol(path, registry)
    text = str(raised.value)
    assert "executors.slurm.partitio" in text and "did you mean 'partition'" in text
    assert "executors.slrum" in text and "slurm" in text


def test_executor_options_do_not_change_job_ids(demo_data, write_protocol, registry):
    from kdbench.plan import build_plan

    plain = build_plan(load_protocol(write_protocol(demo_data), registry), registry)
    path = _with_executors(demo_data, write_protocol, {"slurm": {"partition": "gpu"}})
    with_slurm = build_plan(load_protocol(path, registry), registry)
    assert [j.id for j in plain.jobs] == [j.id for j in with_slurm.jobs]


def test_a_profile_overrides_the_protocol_key_by_key(demo_data, write_protocol, registry,
                                                     tmp_path):
    path = _with_executors(demo_data, write_protocol,
                           {"slurm": {"partition": "cpu", "time_min": 60}})
    protocol = load_protocol(path, registry)
    profile = tmp_path / "cluster.yaml"
    profile.write_text(yaml.safe_dump({"executors": {"slurm": {"partition": "gpu",
                                                               "gpus_per_node": 1}}}))
    options = executor_options(SlurmExecutor, "slurm", protocol.executors, profile)
    assert (options.partition, options.time_min, options.gpus_per_node) == ("gpu", 60, 1)
    assert executor_options(SlurmExecutor, "slurm", protocol.executors, None).partition == "cpu"


@pytest.mark.parametrize(("content", "message"), [
    (None, "profile file .*missing.yaml not found"),
    ("slurm: {partition: gpu}\n", "unknown key\\(s\\): slurm"),
    ("executors: [slurm]\n", "`executors` must map executor names to mappings"),
    ("executors:\n  local: {}\n", "has no options for executor 'slurm' \\(it has: local\\)"),
    ("executors:\n  slurm:\n    mem_gb: -1\n",
     "(?s)cluster.yaml: 1 problem in the options of executor 'slurm'.*executors.slurm.mem_gb "
     "\\(line 3\\)"),
])
def test_bad_profiles_get_one_clear_message(tmp_path, content, message):
    path = tmp_path / ("missing.yaml" if content is None else "cluster.yaml")
    if content is not None:
        path.write_text(content)
    with pytest.raises(KdbenchError, match=message):
        executor_options(SlurmExecutor, "slurm", {}, path)


def test_cli_run_with_a_bad_profile_exits_non_zero(tmp_path):
    from helpers import DEMO, run_cli

    profile = tmp_path / "p.yaml"
    profile.write_text("executors:\n  slurm:\n    partition: [a, b]\n")
    out = run_cli("run", str(DEMO), "--executor", "slurm", "--profile", str(profile),
                  "--dry-run", cwd=tmp_path)
    assert out.returncode != 0
    assert "executors.slurm.partition (line 3)" in out.stderr

"""The ``slurm`` executor: a plan's Jobs as SLURM job arrays, submitted through submitit.

One array per wave (``sbatch --array``, at most ``array_parallelism`` tasks at once); a wave's
array starts only after every earlier array has succeeded (``--dependency=afterok:...``, with
``--kill-on-invalid-dep=yes`` so that a failure cancels what depends on it instead of leaving it
pending for ever). Each task runs ``kdbench job run --job ID``, the same command the ``local``
executor runs: idempotent (a complete Job returns at once), resuming from its checkpoint, and
alone on its Job (the Job lock). Tasks are checkpointable: on a time-out or a preemption,
submitit's signal (USR2, ``signal_delay_s`` before the end) stops the Job and requeues the task,
which resumes from the Job's last epoch checkpoint (``training.checkpoint_every``), at most
``max_requeues`` times.

Every submission is appended to ``runs/<protocol>/executors/slurm/submissions.jsonl`` (Job id,
SLURM id, log files): ``kdbench status`` reads it, and a rerun of ``kdbench run --executor slurm``
does not submit again a Job whose task is still queued or running, it waits for it.

Options (protocol ``executors.slurm`` or a ``--profile`` file): see :class:`SlurmOptions`.
``cluster: local`` runs the same tasks through submitit's local executor (one machine, no
SLURM; waves waited for one by one): for trying a profile out, and for tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from kdbench import Executor, ExecutorOptions, JobLauncher, JobState, KdbenchError, hookimpl

ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
          "COMPLETING", "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}
RECORDS = "submissions.jsonl"


class SlurmOptions(ExecutorOptions):
    """Where and how the tasks run (each field maps to an ``sbatch`` option)."""

    partition: str | None = Field(None, description="--partition (the cluster's default if unset)")
    account: str | None = Field(None, description="--account")
    qos: str | None = Field(None, description="--qos")
    time_min: int = Field(24 * 60, ge=1, description="--time per task, minutes")
    gpus_per_node: int = Field(0, ge=0, description="--gpus-per-node")
    cpus_per_task: int = Field(4, ge=1, description="--cpus-per-task")
    mem_gb: float = Field(16, gt=0, description="--mem per task, GB")
    array_parallelism: int = Field(64, ge=1, description="tasks of one array running at once")
    max_requeues: int = Field(3, ge=0, description="time-outs/preemptions a task may resume from")
    signal_delay_s: int = Field(120, ge=1, description="USR2 this long before the time limit")
    setup: list[str] = Field(default_factory=list,
                             description="shell lines before each task (module load, ...)")
    additional: dict[str, str | int] = Field(
        default_factory=dict, description="other sbatch options, e.g. {constraint: a100}")
    wait: bool = Field(True, description="follow the arrays until they end (false: submit and "
                       "return; `kdbench status` shows progress)")
    poll_s: float = Field(30, gt=0, description="seconds between state queries while waiting")
    cluster: Literal["slurm", "local"] = Field(
        "slurm", description="local: submitit's local executor (one machine; for trying out)")


class JobTask:
    """What one array task runs: ``kdbench job run`` for one Job, in the submitting folder.

    A module-level class (submitit pickles it; ``__main__`` would not unpickle on a node).
    ``checkpoint`` is submitit's hook on USR2: the Job's process is stopped and the same task
    is requeued; the Job resumes from its last checkpoint.
    """

    def __init__(self, cwd: str) -> None:
        self.cwd = cwd
        self._child: subprocess.Popen | None = None

    def __call__(self, job_id: str, command: list[str]) -> str:
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", env.get("SLURM_CPUS_PER_TASK", "1"))
        self._child = subprocess.Popen(command, cwd=self.cwd, env=env)
        code = self._child.wait()
        self._child = None
        if code != 0:
            raise RuntimeError(f"Job {job_id}: `kdbench job run` exited with {code}; its "
                               "output is above")
        return job_id

    def checkpoint(self, job_id: str, command: list[str]) -> Any:
        import submitit

        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
        print(f"Job {job_id}: stopped for a time-out or preemption; requeued, it resumes from "
              "its last checkpoint", flush=True)
        return submitit.helpers.DelayedSubmission(JobTask(self.cwd), job_id, command)

    def __getstate__(self) -> dict[str, Any]:
        return {"cwd": self.cwd}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.cwd, self._child = state["cwd"], None


class Submissions:
    """The append-only record of what was submitted (one JSON line per task)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / RECORDS

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")

    def latest(self) -> dict[str, dict[str, Any]]:
        """Job id -> its last submission."""
        if not self.path.exists():
            return {}
        out: dict[str, dict[str, Any]] = {}
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise KdbenchError(f"{self.path} line {number} is not JSON (a truncated write?);"
                                   " delete that line and rerun") from None
            out[row["job_id"]] = row
        return out


def _logs(folder: Path) -> Path:
    return folder / "logs"


def _job_handle(row: dict[str, Any], folder: Path) -> Any:
    import submitit

    cls = submitit.LocalJob if row.get("cluster") == "local" else submitit.SlurmJob
    return cls(folder=_logs(folder) / "%j", job_id=row["slurm_id"])


def _state(handle: Any) -> str:
    try:
        return str(handle.state).split(" ")[0].upper()
    except Exception:  # noqa: BLE001 - a scheduler that forgot the job
        return "UNKNOWN"


class SlurmExecutor(Executor):
    """Submits each wave of Jobs as one SLURM job array (submitit)."""

    name = "slurm"
    version = "1"
    Options = SlurmOptions

    def execute(self, waves: Sequence[Sequence], launcher: JobLauncher,
                max_parallel: int = 1) -> bool:
        options: SlurmOptions = self.options  # type: ignore[assignment]
        folder = launcher.state_dir
        records = Submissions(folder)
        before = records.latest()
        executor = self._executor(folder, options)
        handles: dict[str, tuple[Any, Any]] = {}  # Job id -> (Job, submitit job)
        earlier: list[str] = []  # SLURM ids the next array waits for
        for number, wave in enumerate(waves):
            fresh = []
            for job in wave:
                row = before.get(job.id)
                handle = _job_handle(row, folder) if row else None
                if handle is not None and _state(handle) in ACTIVE:
                    launcher.note(f"Job {job.id} is still queued or running as SLURM "
                                  f"{row['slurm_id']}; not submitted again")
                    handles[job.id] = (job, handle)
                    earlier.append(row["slurm_id"])
                else:
                    fresh.append(job)
            if not fresh:
                continue
            if options.cluster == "slurm" and earlier:
                executor.update_parameters(dependency="afterok:" + ":".join(earlier))
            submitted = executor.map_array(JobTask(os.getcwd()), [j.id for j in fresh],
                                           [launcher.command(j) for j in fresh])
            now = time.time()
            records.add([{"job_id": j.id, "slurm_id": s.job_id, "wave": number,
                          "cluster": options.cluster, "submitted": now,
                          "stdout": str(s.paths.stdout), "stderr": str(s.paths.stderr)}
                         for j, s in zip(fresh, submitted, strict=True)])
            array = submitted[0].job_id.split("_")[0]
            launcher.note(f"wave {number + 1}: {len(fresh)} Job(s) submitted as array {array} "
                          f"(logs: {_logs(folder)})")
            for job, handle in zip(fresh, submitted, strict=True):
                launcher.started(job)
                handles[job.id] = (job, handle)
            earlier.append(array)
            if options.cluster == "local":  # no dependencies there: wait for the wave
                self._follow({j.id: handles.pop(j.id) for j in fresh}, launcher, options)
        if options.wait:
            self._follow(handles, launcher, options)
            return False
        if handles:
            launcher.note(f"{len(handles)} Job(s) submitted or queued; follow them with "
                          "`kdbench status`, rerun the same command after failures")
        return bool(handles)

    @staticmethod
    def _executor(folder: Path, options: SlurmOptions) -> Any:
        import submitit

        if options.cluster == "local":
            executor = submitit.LocalExecutor(folder=_logs(folder) / "%j",
                                              max_num_timeout=options.max_requeues)
            executor.update_parameters(timeout_min=options.time_min,
                                       signal_delay_s=options.signal_delay_s,
                                       gpus_per_node=options.gpus_per_node,
                                       setup=list(options.setup))
            return executor
        executor = submitit.SlurmExecutor(folder=_logs(folder) / "%j",
                                          max_num_timeout=options.max_requeues)
        extra = {"kill-on-invalid-dep": "yes", **options.additional}
        executor.update_parameters(
            job_name="kdbench", time=options.time_min, cpus_per_task=options.cpus_per_task,
            mem=f"{int(options.mem_gb * 1024)}M", signal_delay_s=options.signal_delay_s,
            array_parallelism=options.array_parallelism, setup=list(options.setup),
            additional_parameters=extra,
            **{k: v for k, v in (("partition", options.partition), ("account", options.account),
                                 ("qos", options.qos),
                                 ("gpus_per_node", options.gpus_per_node or None))
               if v is not None})
        return executor

    @staticmethod
    def _follow(handles: dict[str, tuple[Any, Any]], launcher: JobLauncher,
                options: SlurmOptions) -> None:
        """Wait until every task has ended; raise naming the failed ones and their logs."""
        failed = []
        pending = dict(handles)
        while pending:
            for job_id, (job, handle) in list(pending.items()):
                if not handle.done():
                    continue
                del pending[job_id]
                try:
                    handle.result()
                    ok = True
                except Exception as exc:  # noqa: BLE001 - a failed task: reported below
                    ok = False
                    failed.append(f"  {job_id} ({job.component} N={job.n} seed {job.seed}) "
                                  f"SLURM {handle.job_id}: {_last_line(exc)}; log "
                                  f"{handle.paths.stderr}")
                launcher.finished(job, ok)
            if pending:
                time.sleep(options.poll_s)
        if failed:
            raise KdbenchError(f"{len(failed)} Job(s) failed:\n" + "\n".join(failed)
                               + "\nrerun the same command to resubmit the unfinished Jobs "
                               "(complete ones are skipped, interrupted ones resume)")

    @classmethod
    def status(cls, state_dir: Path, plan: Any) -> list[JobState]:
        rows = Submissions(state_dir).latest()
        ids = {j.id for j in plan.jobs}
        out = []
        for job_id, row in rows.items():
            if job_id not in ids:
                continue
            state = _state(_job_handle(row, state_dir))
            out.append(JobState(job_id=job_id, external_id=row["slurm_id"], state=state,
                                active=state in ACTIVE, log=row.get("stderr")))
        return out


def _last_line(exc: BaseException) -> str:
    """The error a task's traceback ends with (submitit wraps it in its own message)."""
    import re

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Exit)\w*: ", line)]
    return (errors or lines or [type(exc).__name__])[-1][:300]


@hookimpl
def kdbench_register_executors(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``slurm``."""
    registry.add(SlurmExecutor)


__all__ = ["JobTask", "SlurmExecutor", "SlurmOptions", "Submissions"]

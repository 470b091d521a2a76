"""``kdbench status PROTOCOL``: where every Job of a protocol stands, from a login node.

Two sources, read without touching any Job: the MLflow record (a complete run is the only
proof that a Job is done; its latest run says whether an attempt is running or failed) and the
records of every executor that submitted Jobs of this protocol (``Executor.status``: for
``slurm``, the SLURM array task of each Job and the scheduler's state of it). A Job is

- ``done``: it has a complete run;
- ``pending`` / ``running``: its task is queued / running (scheduler), or, when no scheduler
  knows it, a process holds the Job's lock (``kdbench.engine.lock``);
- ``failed``: its last task ended without a complete run (FAILED, TIMEOUT, CANCELLED,
  OUT_OF_MEMORY, ...), or its latest run FAILED, was KILLED, or is still marked RUNNING
  though no process holds the Job (killed without a word);
- ``todo``: never started.

A scheduler that cannot answer (state ``UNKNOWN``, e.g. no ``sacct``) is ignored: the MLflow
record and the lock decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.engine.execute import ExecutionSettings
from kdbench.registry import Registry
from kdbench.types import Job, Plan

STATES = ("done", "running", "pending", "failed", "todo")
_QUEUED = ("PENDING", "REQUEUE", "SUSPENDED", "RESV_DEL_HOLD")


@dataclass(frozen=True)
class JobStatus:
    """One Job's state and where to look."""

    job: Job
    state: str
    run_id: str | None = None
    executor: str | None = None
    external_id: str | None = None
    scheduler_state: str | None = None
    log: str | None = None


def _latest_runs(tracker: Any) -> tuple[dict[str, Any], set[str]]:
    from kdbench.tracking import COMPLETE, JOB_ID, STATUS

    runs = tracker.client.search_runs([tracker.experiment_id], max_results=50000,
                                      order_by=["attributes.start_time DESC"])
    latest: dict[str, Any] = {}
    complete: dict[str, Any] = {}
    for run in runs:
        job_id = run.data.tags.get(JOB_ID)
        if job_id is None:
            continue
        latest.setdefault(job_id, run)
        if run.data.tags.get(STATUS) == COMPLETE:
            complete.setdefault(job_id, run)
    return {**latest, **complete}, set(complete)


def _state(run: Any, done: bool, scheduled: Any | None, held: bool) -> str:
    if done:
        return "done"
    if scheduled is not None and scheduled.state != "UNKNOWN":  # UNKNOWN: no answer
        if scheduled.active:
            return "pending" if scheduled.state.startswith(_QUEUED) else "running"
        return "failed"  # the task ended and the Job has no complete run
    if held:
        return "running"
    return "todo" if run is None else "failed"


def protocol_status(settings: ExecutionSettings, registry: Registry
                    ) -> tuple[Plan, list[JobStatus]]:
    """Every Job of the protocol with its state, in plan order."""
    from kdbench.engine.job import job_dir
    from kdbench.engine.lock import is_held
    from kdbench.protocol import load_protocol
    from kdbench.runner import state_dir
    from kdbench.tracking import Tracker, default_tracking_uri
    from kdbench.tuning.resolved import plan_protocol

    protocol = load_protocol(settings.protocol_path, registry)
    plan = plan_protocol(protocol, registry, settings.optuna_storage)
    tracker = Tracker(plan, settings.tracking_uri or default_tracking_uri())
    runs, complete = _latest_runs(tracker)
    scheduled: dict[str, tuple[str, Any]] = {}
    for name in registry.executors.names():
        folder = state_dir(settings, plan, name)
        if Path(folder).is_dir():
            for found in registry.executors.get(name).status(folder, plan):
                scheduled[found.job_id] = (name, found)
    out = []
    for job in plan.jobs:
        run = runs.get(job.id)
        executor, found = scheduled.get(job.id, (None, None))
        out.append(JobStatus(
            job, _state(run, job.id in complete, found,
                        is_held(job_dir(settings.runs_dir, plan, job))),
            run_id=run.info.run_id if run is not None else None, executor=executor,
            external_id=found.external_id if found else None,
            scheduler_state=found.state if found else None, log=found.log if found else None))
    return plan, out


def counts(statuses: list[JobStatus]) -> dict[str, int]:
    """Jobs per state, every state listed."""
    return {s: sum(x.state == s for x in statuses) for s in STATES}

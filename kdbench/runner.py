"""``kdbench run PROTOCOL``: the plan's Jobs in dependency order, through an executor plugin.

Before any training, the protocol's data is prepared and split, the test set is asserted
disjoint from every training and validation subset, and no teacher to train may have been
pretrained on a test case (``kdbench.engine.preflight.check_pretraining``). Jobs with a
complete MLflow run are skipped; interrupted ones resume from their checkpoints. A rich
progress display shows Jobs done/total, the current Job, its epoch and an ETA.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.engine.execute import ExecutionSettings, execute_job
from kdbench.errors import KdbenchError
from kdbench.registry import Registry
from kdbench.tuning.resolved import plan_protocol, require_resolved
from kdbench.types import Job, JobSpec, Plan


@dataclass
class RunReport:
    """What ``run_protocol`` did."""

    plan: Plan
    skipped: list[str]
    todo: list[str]
    tracking_uri: str
    experiment: str
    detached: bool = False  # the executor submitted the Jobs and returned before they ended


def select_jobs(plan: Plan, only: Sequence[str] | None) -> list[Job]:
    """The Jobs of ``only`` (strategy labels or component names) and everything they need."""
    if not only:
        return list(plan.jobs)
    wanted = set(only)
    known = {j.component for j in plan.jobs} | {s.key for s in plan.protocol.strategies}
    unknown = sorted(wanted - known)
    if unknown:
        raise KdbenchError(f"--only {', '.join(unknown)}: not in this protocol "
                           f"(strategies: {', '.join(sorted(known))})")
    chosen: dict[str, Job] = {}

    def add(job: Job) -> None:
        for dep in job.depends_on.values():
            add(plan.job(dep))
        chosen.setdefault(job.id, job)

    for job in plan.jobs:
        labels = {r.label for r in job.strategy_roles}
        if job.component in wanted or labels & wanted:
            add(job)
    return [j for j in plan.jobs if j.id in chosen]


class _Launcher:
    """Starts Jobs for an executor and keeps the progress display up to date."""

    def __init__(self, settings: ExecutionSettings, registry: Registry, plan: Plan, total: int,
                 progress: Any | None, state_dir: Path) -> None:
        self.settings, self.registry, self.plan = settings, registry, plan
        self.progress = progress
        self._state_dir = state_dir
        self.task = progress.add_task("jobs", total=total) if progress else None

    def _epoch(self, job: Job) -> Any:
        def report(r: Any) -> None:
            if self.progress is not None:
                self.progress.update(self.task, description=f"{job.component} N={job.n} "
                                     f"seed {job.seed} [{job.id[:8]}] epoch {r.epoch + 1}")
        return report

    def run_inline(self, job: Job) -> None:
        execute_job(self.plan.spec(job.id), self.settings, self.registry,
                    callbacks=[self._epoch(job)])

    def command(self, job: Job) -> list[str]:
        """Writes the Job's spec to its folder (``job.json``) and returns the command that
        runs it: ``kdbench job run --spec`` (the protocol file is not read again)."""
        from kdbench.engine.job import job_dir
        from kdbench.engine.spec import SPEC_FILE, write_spec

        s = self.settings
        spec = write_spec(job_dir(s.runs_dir, self.plan, job) / SPEC_FILE,
                          self.plan.spec(job.id))
        return [sys.executable, "-m", "kdbench", *s.to_args(), "job", "run",
                "--spec", str(spec), "--data-dir", str(s.data_dir),
                "--runs-dir", str(s.runs_dir), "--device", s.device,
                "--data-workers", str(s.data_workers),
                *(["--tracking-uri", s.tracking_uri] if s.tracking_uri else []),
                *(["--compile"] if s.compile else [])]

    def started(self, job: Job) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=f"{job.component} N={job.n} "
                                 f"seed {job.seed} [{job.id[:8]}]")

    def finished(self, job: Job, ok: bool) -> None:
        if self.progress is not None and ok:
            self.progress.advance(self.task)

    def note(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False, soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    @property
    def state_dir(self) -> Path:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        return self._state_dir


def job_spec(settings: ExecutionSettings, registry: Registry, job_id: str) -> JobSpec:
    """The spec of Job ``job_id`` of the protocol in ``settings`` (``kdbench job run PROTOCOL
    --job ID``): its plan is built, with ``tuned`` values from finished studies."""
    from kdbench.protocol import load_protocol

    protocol = load_protocol(settings.protocol_path, registry)
    plan = plan_protocol(protocol, registry, settings.optuna_storage)
    if job_id not in {j.id for j in plan.jobs}:
        raise KdbenchError(f"no Job {job_id!r} in protocol {protocol.name!r}; see "
                           "`kdbench plan`")
    return plan.spec(job_id)


def state_dir(settings: ExecutionSettings, plan: Plan, executor: str) -> Path:
    """Where executor ``executor`` keeps its records of ``plan``'s Jobs."""
    return Path(settings.runs_dir) / plan.protocol.name / "executors" / executor


@contextlib.contextmanager
def data_lock(data_dir: Path) -> Iterator[None]:
    """One runner at a time prepares data in ``data_dir``; the others wait, then find it
    prepared. A data folder this process cannot write to (shared prepared data) is used as
    it is, without the lock."""
    from kdbench.engine.lock import file_lock

    path = Path(data_dir) / ".kdbench-run-data.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        yield
        return
    with file_lock(path, f"the data in {data_dir} is being prepared by another process"):
        yield


def run_protocol(
    settings: ExecutionSettings,
    registry: Registry,
    *,
    executor: str = "inline",
    only: Sequence[str] | None = None,
    dry_run: bool = False,
    max_parallel: int = 1,
    progress: Any | None = None,
    profile: Path | None = None,
) -> RunReport:
    """Run every unfinished Job of the protocol (see the module docstring)."""
    from kdbench.data.protocol_data import ensure_data
    from kdbench.protocol import load_protocol
    from kdbench.protocol.profile import executor_options
    from kdbench.tracking import Tracker, default_tracking_uri

    if executor not in registry.executors:
        raise KdbenchError(registry.executors.unknown_message(executor))
    protocol = load_protocol(settings.protocol_path, registry)
    cls = registry.executors.get(executor)
    options = executor_options(cls, executor, protocol.executors, profile)
    plan = plan_protocol(protocol, registry, settings.optuna_storage)
    selected = select_jobs(plan, only)
    settings.tracking_uri = settings.tracking_uri or default_tracking_uri()
    if not dry_run:  # a read-only runs folder or MLflow store: said now, not mid-Job
        from kdbench.engine.preflight import check_outputs

        check_outputs(settings.runs_dir, settings.tracking_uri)
    tracker = Tracker(plan, settings.tracking_uri)
    complete = tracker.complete_job_ids()
    wanted = {j.id for j in selected if j.id not in complete}
    waves = [[j for j in wave if j.id in wanted] for wave in plan.waves()]
    waves = [w for w in waves if w]
    report = RunReport(plan, sorted(j.id for j in selected if j.id in complete),
                       [j.id for w in waves for j in w], settings.tracking_uri,
                       tracker.experiment_name)
    if dry_run or not waves:
        return report
    # an unfinished study stops the run before any training
    require_resolved(plan, [j for w in waves for j in w], registry, settings.optuna_storage)
    # prepares (idempotently) and asserts no test case is in any training/validation subset;
    # runners started at once on fresh data wait for the first one's preparation
    with data_lock(settings.data_dir):
        data = ensure_data(protocol, registry, settings.data_dir)
    # a teacher pretrained on a test case (or with undeclared training data) stops the run
    # before its first Job, not when its Job comes up
    from kdbench.engine.job import strategy_of
    from kdbench.engine.preflight import check_pretraining

    check_pretraining([(j, strategy_of(j, registry)) for w in waves for j in w], data)
    launcher = _Launcher(settings, registry, plan, len(report.todo), progress,
                         state_dir(settings, plan, executor))
    report.detached = bool(cls(options).execute(waves, launcher, max_parallel=max_parallel))
    return report

"""Executing one Job with its record: the unit every executor runs, in-process or not.

``execute_job`` runs a Job spec (:class:`kdbench.types.JobSpec`: the Job, its dependencies and
the protocol; no protocol file is read and no plan built). It is idempotent: a Job with a
complete MLflow run is skipped (that record is the one source of "done"); otherwise a new run
is started, the spec is written to the Job's folder (``job.json``), the Job trains (resuming
from its checkpoint), predicts, is scored on every test case and region
(:mod:`kdbench.metrics.job_scores`), and the run is completed (its final tag written last).
Epoch reports are also appended to ``epochs.jsonl`` in the Job's folder, so a run that
completes after a resume still holds the whole curve. Only one process runs a Job at a time
(``kdbench.engine.lock``, and across hosts ``kdbench.engine.claims``): a second one waits, then
finds the Job complete. The runs folder and a local MLflow store are checked writable first
(``kdbench.engine.preflight``).
"""

from __future__ import annotations

import contextlib
import errno
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.engine.job import job_dir, train_and_predict
from kdbench.engine.preflight import check_outputs
from kdbench.errors import KdbenchError
from kdbench.faults import fault_point, fault_scope
from kdbench.registry import Registry
from kdbench.types import EpochReport, JobSpec

#: Errors of the storage rather than of the Job: a full disk or quota, a read-only or forbidden
#: folder (reported as one message).
_STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


@dataclass
class ExecutionSettings:
    """Where a protocol's Jobs read and write, and how they train."""

    protocol_path: Path | None = None  # None: a Job run from its spec alone
    data_dir: Path = Path("data")
    runs_dir: Path = Path("runs")
    tracking_uri: str | None = None
    device: str = "cpu"
    data_workers: int = 0
    compile: bool = False
    plugins_dirs: list[Path] = field(default_factory=list)
    optuna_storage: str | None = None  # where `tuned` Jobs find their studies (docs/tuning.md)

    def to_args(self) -> list[str]:
        """The same settings as ``kdbench job run`` options."""
        args = []
        for folder in self.plugins_dirs:
            args += ["--plugins-dir", str(folder)]
        return args


class EpochLog:
    """Callback: append each epoch report to ``epochs.jsonl`` and log it to the live run."""

    def __init__(self, path: Path, tracker: Any, run_id: str) -> None:
        self.path, self.tracker, self.run_id = path, tracker, run_id
        self.live: set[int] = set()

    def __call__(self, report: Any) -> None:
        record = {k: getattr(report, k) for k in EpochReport.__dataclass_fields__}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.tracker.log_epoch(self.run_id, report)
        self.live.add(report.epoch)
        fault_point("epoch", epoch=report.epoch)  # logged, not yet checkpointed

    def earlier(self) -> list[EpochReport]:
        """Epochs recorded by earlier attempts and not logged to this run (last one wins)."""
        if not self.path.exists():
            return []
        by_epoch = {}
        for line in self.path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                by_epoch[record["epoch"]] = EpochReport(**record)
        return [by_epoch[e] for e in sorted(by_epoch) if e not in self.live]


def execute_job(spec: JobSpec, settings: ExecutionSettings, registry: Registry | None = None,
                callbacks: list[Any] | None = None) -> str:
    """Run the Job of ``spec`` with its MLflow record; return the complete run's id.

    Nothing is re-read from a protocol file and no plan is built: the spec holds the Job, its
    dependencies and the validated protocol (``kdbench job run --spec job.json``).

    Raises:
        KdbenchError: a ``tuned`` Job whose study has not finished, a dependency without a
            complete run, or any error of the Job itself (its run is then marked FAILED and
            never counts).
    """
    from kdbench.plugin_manager import load_plugins
    from kdbench.tracking import Tracker, default_tracking_uri

    job, plan = spec.job, spec.plan()
    if job.pending_tuning:
        raise KdbenchError(
            f"Job {job.id} ({job.component}) uses `tuned` hyper-parameters and was planned "
            "before its study finished; run `kdbench tune` to the end, then run the protocol "
            "again (its plan then holds the study's best values, under a new Job id)")
    registry = registry or load_plugins(settings.plugins_dirs)
    uri = settings.tracking_uri or default_tracking_uri()
    check_outputs(settings.runs_dir, uri)
    tracker = Tracker(plan, uri)
    done = tracker.complete_run(job)
    if done is not None:
        return done.info.run_id
    from kdbench.engine.claims import claims_url, job_claim
    from kdbench.engine.lock import job_lock

    url = claims_url(uri)
    with fault_scope(job=job.id, component=job.component), contextlib.ExitStack() as held:
        claim = held.enter_context(job_claim(url, job.id)) if url else None
        held.enter_context(job_lock(job_dir(settings.runs_dir, plan, job), job.id))
        done = tracker.complete_run(job)  # another process may have finished it meanwhile
        if done is not None:
            return done.info.run_id
        return _execute(spec, tracker, settings, registry, callbacks, claim)


def _execute(spec: JobSpec, tracker: Any, settings: ExecutionSettings, registry: Registry,
             callbacks: list[Any] | None, claim: Any | None) -> str:
    from kdbench.data.protocol_data import ensure_data
    from kdbench.engine.spec import SPEC_FILE, write_spec
    from kdbench.metrics.job_scores import score_job

    job, plan, protocol = spec.job, spec.plan(), spec.protocol
    dependency_runs = {}
    for role, dep_id in sorted(job.depends_on.items()):
        dep = tracker.complete_run(plan.job(dep_id))
        if dep is None:
            raise KdbenchError(f"Job {job.id} needs its {role} Job {dep_id}, which has no "
                               "complete run yet; run the protocol in order")
        dependency_runs[role] = dep.info.run_id
    data = ensure_data(protocol, registry, settings.data_dir)
    run_id = tracker.start(job, split_hash=data.splits.seed_hash(job.seed),
                           dependency_runs=dependency_runs, study=job.tuned_study)
    folder = job_dir(settings.runs_dir, plan, job)
    folder.mkdir(parents=True, exist_ok=True)
    epochs = EpochLog(folder / "epochs.jsonl", tracker, run_id)
    try:
        write_spec(folder / SPEC_FILE, spec)
        result = train_and_predict(job, plan, registry, data, settings.runs_dir,
                                   device=settings.device, data_workers=settings.data_workers,
                                   compile=settings.compile,
                                   callbacks=[epochs, *(callbacks or [])])
        tracker.log_epochs(run_id, epochs.earlier())
        per_case, summary = score_job(result, job, data, registry, protocol.metrics)
        table = folder / "per_case.csv"
        per_case.to_csv(table, index=False)
        fault_point("score")  # scored, not yet recorded
        if claim is not None:
            claim.check()  # never record a Job whose claim another process may hold now
        tracker.finish(run_id, [table, folder / "done.json", folder / SPEC_FILE], summary)
    except BaseException as exc:
        with contextlib.suppress(Exception):  # a store that fails too must not hide the cause
            tracker.fail(run_id)
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRORS:
            raise KdbenchError(
                f"Job {job.id} ({job.component}): {exc.strerror} ({exc.filename or folder}); "
                "free disk space or make the folder writable, then run again: the Job resumes "
                "from its last checkpoint, and nothing finished is lost") from exc
        raise
    return run_id

"""The record of a benchmark in MLflow: one experiment per protocol, one run per Job.

A run counts as done only when complete: the tag ``kdbench.status = complete`` is written
last, after the parameters, curves, per-case table and summary metrics. A Job that crashed (or
was killed) leaves a run without that tag, which never counts; the next attempt marks it
``KILLED`` and starts a new run. Every call that logs several values is batched
(``log_batch``: one ``log_metric`` call costs ~5 ms on SQLite).

Default tracking URI: ``sqlite:///<cwd>/mlruns/mlflow.db`` (never the Optuna study file: both
keep an alembic version table), artefacts under ``mlruns/artifacts``. Any MLflow URI (a tracking
server) through ``--tracking-uri`` or ``KDBENCH_TRACKING_URI``.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdbench import environment
from kdbench.faults import fault_point
from kdbench.modalities import label
from kdbench.types import Job, Plan
from kdbench.version import __version__

ENV_TRACKING_URI = "KDBENCH_TRACKING_URI"
STATUS = "kdbench.status"
COMPLETE = "complete"
JOB_ID = "kdbench.job_id"


def local_store(env: str, relative: str, root: Path | None = None) -> str:
    """The URL in environment variable ``env``, else a SQLite file at ``relative`` under
    ``root`` (default: the working directory), its folder created."""
    if os.environ.get(env):
        return os.environ[env]
    path = Path(root or Path.cwd()) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def default_tracking_uri(root: Path | None = None) -> str:
    """``KDBENCH_TRACKING_URI``, else a SQLite file ``mlruns/mlflow.db`` under ``root``/cwd."""
    return local_store(ENV_TRACKING_URI, "mlruns/mlflow.db", root)


def local_folders(tracking_uri: str) -> list[tuple[Path, str]]:
    """The local folders an MLflow URI writes to, with what it keeps there: a SQLite file's
    folder and the artefacts beside it (:class:`Tracker`'s default), a ``file:`` store; none
    for a tracking server."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        return [(database.parent, f"the MLflow database {database.name}"),
                (database.parent / "artifacts", "the MLflow artefacts")]
    if tracking_uri.startswith("file:"):
        return [(Path(tracking_uri.removeprefix("file://").removeprefix("file:")),
                 "the MLflow record")]
    if "://" not in tracking_uri:
        return [(Path(tracking_uri), "the MLflow record")]
    return []


def git_commit(cwd: Path | None = None) -> str:
    """The short commit of the working tree, ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=cwd or Path(__file__).parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = str(value)[:6000]


def mlflow_client(tracking_uri: str) -> Any:
    """An ``MlflowClient``; for a SQLite file, made under an exclusive lock beside it.

    MLflow creates and migrates a new database's tables when its first client opens it, without
    a lock (MLflow 3.17's ``SqlAlchemyStore``): two runners started at once on a fresh file
    both migrate, both fail, and the file is left half-migrated for good. The lock makes the
    second wait for the first's tables. A folder this process cannot write to is opened without
    it (a reader of someone else's record).
    """
    from mlflow.tracking import MlflowClient

    if not tracking_uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=tracking_uri)
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    try:
        handle = open(database.with_name(database.name + ".lock"), "a")  # noqa: SIM115
    except OSError:
        return MlflowClient(tracking_uri=tracking_uri)
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            return MlflowClient(tracking_uri=tracking_uri)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_experiment(client: Any, name: str, *, artifact_location: str | None = None,
                      tags: Mapping[str, str] | None = None) -> str:
    """The id of experiment ``name``, created if missing. Safe when several processes (array
    tasks, tuning workers) create it at once: the loser of the race reads the winner's."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location,
                                        tags=dict(tags or {}))
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class Tracker:
    """MLflow records of one protocol's Jobs.

    Args:
        plan: the protocol's plan (its name is the experiment's).
        tracking_uri: any MLflow tracking URI.
        artifact_root: where a new experiment keeps artefacts (default beside a SQLite file).
    """

    def __init__(self, plan: Plan, tracking_uri: str, artifact_root: Path | None = None) -> None:
        self.plan = plan
        self.uri = tracking_uri
        self.client = mlflow_client(tracking_uri)
        name = f"kdbench/{plan.protocol.name}"
        location = None
        if artifact_root is None and tracking_uri.startswith("sqlite:///"):
            artifact_root = Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
        if artifact_root is not None:
            location = Path(artifact_root).resolve().as_uri()
        self.experiment_id = ensure_experiment(
            self.client, name, artifact_location=location,
            tags={"kdbench.protocol": plan.protocol.name,
                  "kdbench.protocol_version": plan.protocol.version})
        self.experiment_name = name

    # -- lookup ---------------------------------------------------------------------------------

    def _runs(self, job: Job, extra: str = "") -> list[Any]:
        query = f"tags.`{JOB_ID}` = '{job.id}'" + (f" and {extra}" if extra else "")
        return self.client.search_runs([self.experiment_id], filter_string=query,
                                       max_results=100)

    def complete_run(self, job: Job) -> Any | None:
        """The complete run of ``job``, if there is one."""
        runs = self._runs(job, f"tags.`{STATUS}` = '{COMPLETE}'")
        return runs[0] if runs else None

    def complete_runs(self) -> list[Any]:
        """Every complete run of the experiment."""
        return self.client.search_runs([self.experiment_id],
                                       filter_string=f"tags.`{STATUS}` = '{COMPLETE}'",
                                       max_results=50000)

    def complete_job_ids(self) -> set[str]:
        """Ids of every Job of the plan with a complete run."""
        return {r.data.tags[JOB_ID] for r in self.complete_runs()}

    # -- writing --------------------------------------------------------------------------------

    def start(self, job: Job, *, split_hash: str, dependency_runs: Mapping[str, str],
              study: str | None = None) -> str:
        """A new run for ``job``, tagged with its grid coordinates and the runs of the Jobs it
        depends on (role -> run id), and for a ``tuned`` Job (given with its study's best
        hyper-parameters) the study's name; earlier incomplete runs of the same Job are marked
        KILLED (they never counted)."""
        from mlflow.entities import Param, RunTag

        for old in self._runs(job):
            if old.data.tags.get(STATUS) != COMPLETE and old.info.status == "RUNNING":
                self.client.set_terminated(old.info.run_id, status="KILLED")
        protocol = self.plan.protocol
        tags = {
            JOB_ID: job.id,
            STATUS: "running",
            "kdbench.component": job.component,
            "kdbench.kind": job.kind,
            "kdbench.roles": "; ".join(str(r) for r in job.roles),
            "kdbench.n": str(job.n),
            "kdbench.seed": str(job.seed),
            "kdbench.training_modalities": label(job.modalities.training),
            "kdbench.evaluated_subsets": ", ".join(label(s) for s in job.modalities.evaluate),
            "kdbench.protocol": protocol.name,
            "kdbench.protocol_version": protocol.version,
            "kdbench.split_hash": split_hash,
            "kdbench.version": __version__,
            "kdbench.git_commit": git_commit(),
        }
        if study is not None:
            tags["kdbench.tuned_study"] = study
        machine = environment.describe(torch=True)
        tags.update(environment.tags(machine))
        for role, dep_run in sorted(dependency_runs.items()):
            tags[f"kdbench.{role}_run_id"] = dep_run
            tags[f"kdbench.{role}_job_id"] = job.depends_on[role]
        run = self.client.create_run(self.experiment_id, run_name=f"{job.component}-N{job.n}"
                                     f"-s{job.seed}-{job.id[:8]}", tags=tags)
        params: dict[str, str] = {}
        _flatten("hparams", job.hparams, params)
        _flatten("", {k: v for k, v in job.spec.items()
                      if k in ("backbone", "training", "split", "dataset")}, params)
        self.client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag("kdbench.spec_component",
                                           f"{job.component}@{job.spec['component']['version']}")])
        self.client.log_dict(run.info.run_id, machine, "environment.json")
        return run.info.run_id

    def log_epoch(self, run_id: str, report: Any) -> None:
        """One batched call per epoch: loss terms, learning rate, validation Dice per region."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = {f"train_{k}": v for k, v in report.train_terms.items()}
        values["learning_rate"] = report.learning_rate
        values["val_loss"] = report.val_loss
        values["val_dice_mean"] = report.mean_val_dice
        for region, dice in zip(("WT", "TC", "ET"), report.val_dice, strict=False):
            values[f"val_dice_{region}"] = dice
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, report.epoch)
                                               for k, v in values.items()])

    def log_epochs(self, run_id: str, reports: list[Any]) -> None:
        """Epoch curves logged after the fact (those of attempts before a resume)."""
        for report in reports:
            self.log_epoch(run_id, report)

    def finish(self, run_id: str, artifacts: list[Path], summary: Mapping[str, float]) -> None:
        """Artefacts (the per-case table first), summary metrics, then the final tag."""
        from mlflow.entities import Metric

        for path in artifacts:
            self.client.log_artifact(run_id, str(path))
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in summary.items()]
        for start in range(0, len(metrics), 900):  # MLflow takes at most 1000 per batch
            self.client.log_batch(run_id, metrics=metrics[start:start + 900])
        fault_point("record")  # a crash here leaves a run with metrics but not complete
        self.client.set_tag(run_id, STATUS, COMPLETE)  # last: the run now counts
        self.client.set_terminated(run_id, status="FINISHED")

    def fail(self, run_id: str) -> None:
        """Mark a run whose Job raised (it never counts)."""
        self.client.set_terminated(run_id, status="FAILED")

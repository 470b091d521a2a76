"""The MLflow record of ``kdbench tune``: an experiment ``kdbench/<protocol>/tuning``, one parent
run per study (tagged ``kdbench.study``, closed with its summary's counts and best parameters),
one nested run per trial (its parameters, per-epoch validation curves, its Optuna state).

mlflow is imported inside the methods, like everywhere in the tuner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kdbench.tuning.studies import StudyTarget
from kdbench.tuning.summary import StudySummary

if TYPE_CHECKING:
    from kdbench.protocol.models import TuningSpec

STUDY_TAG = "kdbench.study"


class TuningRecord:
    """The protocol's tuning experiment, shared by every worker of its studies."""

    def __init__(self, tracking_uri: str, protocol: str, storage: str, *, shared: bool) -> None:
        from kdbench.tracking import ensure_experiment, mlflow_client

        self.url, self.shared = storage, shared
        self.client = mlflow_client(tracking_uri)  # a fresh SQLite file safely
        self.experiment = ensure_experiment(  # safe when workers create it at once
            self.client, f"kdbench/{protocol}/tuning", tags={"kdbench.protocol": protocol})

    def parent_run(self, target: StudyTarget, budget: TuningSpec) -> str:
        """The study's MLflow parent run, created by the first worker; workers that create one
        at the same instant all keep the oldest and delete their own."""
        created = None
        runs = self._parents(target)
        if not runs:
            from kdbench.tuning.studies import display_url

            created = self.client.create_run(self.experiment, run_name=target.name, tags={
                STUDY_TAG: target.name, "kdbench.strategy": target.label,
                "kdbench.scenario": target.scenario, "kdbench.n": str(target.n),
                "kdbench.seed": str(target.template.seed),
                "kdbench.storage": display_url(self.url),
                "kdbench.template_job": target.template.id,
                **{f"kdbench.tuning.{k}": str(v) for k, v in budget.model_dump().items()}
            }).info.run_id
            runs = self._parents(target) if self.shared else []
            if not runs:
                return created
        keep = min(runs, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id
        if created is not None and created != keep:
            self.client.delete_run(created)
        return keep

    def _parents(self, target: StudyTarget) -> list[Any]:
        """The study's parent runs (its trials' runs carry the same tag), oldest first."""
        runs = self.client.search_runs([self.experiment],
                                       filter_string=f"tags.`{STUDY_TAG}` = '{target.name}'",
                                       order_by=["attributes.start_time ASC"], max_results=100)
        return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]

    def start_trial(self, target: StudyTarget, parent: str, number: int, job: Any,
                    tags: dict[str, str] | None = None) -> str:
        """A trial's nested run (state RUNNING) with the Job's hyperparameters; its id."""
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment, run_name=f"trial {number}", tags={
            "mlflow.parentRunId": parent, STUDY_TAG: target.name,
            "kdbench.trial": str(number), "kdbench.job_id": job.id,
            "kdbench.optuna_state": "RUNNING", **(tags or {})})
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(f"hparams.{k}", str(v))
                                              for k, v in sorted(job.hparams.items())])
        return run_id

    def log_epoch(self, run_id: str, epoch: Any) -> None:
        """One validated epoch's curves: mean and per-region Dice, loss."""
        from mlflow.entities import Metric

        values = {"val_dice_mean": epoch.mean_val_dice, "val_loss": epoch.val_loss}
        for region, dice in zip(("WT", "TC", "ET"), epoch.val_dice, strict=False):
            values[f"val_dice_{region}"] = dice
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), 0, epoch.epoch)
                                               for k, v in values.items()])

    def end_trial(self, run_id: str, state: str, status: str) -> None:
        """A trial's run closed with its Optuna state and MLflow status."""
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag("kdbench.optuna_state", state)])
        self.client.set_terminated(run_id, status=status)

    def kill_failed(self, target: StudyTarget, failed: set[int]) -> None:
        """The still RUNNING runs of the study's trials numbered in ``failed``: marked KILLED."""
        runs = self.client.search_runs(
            [self.experiment], filter_string=f"tags.`{STUDY_TAG}` = '{target.name}' and "
            "attributes.status = 'RUNNING'", max_results=1000)
        for run in runs:
            number = run.data.tags.get("kdbench.trial")
            if number is not None and int(number) in failed:
                self.killed(target, int(number))

    def killed(self, target: StudyTarget, number: int, running_only: bool = True) -> None:
        """The MLflow run of a trial whose tuner was killed: marked FAIL and KILLED."""
        runs = self.client.search_runs(
            [self.experiment], filter_string=f"tags.`{STUDY_TAG}` = '{target.name}' and "
            f"tags.`kdbench.trial` = '{number}'", max_results=10)
        for run in runs:
            if run.info.status == "RUNNING" or not running_only:
                self.client.set_tag(run.info.run_id, "kdbench.optuna_state", "FAIL")
                self.client.set_terminated(run.info.run_id, status="KILLED")

    def finish_parent(self, parent: str, summary: StudySummary) -> None:
        """The parent run closed with the study's counts, best value and best parameters."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException

        metrics = [Metric(k, float(v), 0, 0) for k, v in (
            ("trials_complete", summary.complete), ("trials_pruned", summary.pruned),
            ("trials_failed", summary.failed)) if v is not None]
        if summary.best_value is not None:
            metrics.append(Metric("best_val_dice_mean", float(summary.best_value), 0, 0))
        tags = [RunTag("kdbench.best_params", repr(summary.best_params))]
        for attempt in range(2):  # two workers finishing at once may both log the best params
            logged = {p for p in self.client.get_run(parent).data.params}
            params = [Param(f"best.{k}", str(v)) for k, v in sorted(summary.best_params.items())
                      if f"best.{k}" not in logged]
            try:
                self.client.log_batch(parent, metrics=metrics, params=params, tags=tags)
                break
            except MlflowException:
                if attempt or not self.shared:
                    raise
        self.client.set_terminated(parent, status="FINISHED")

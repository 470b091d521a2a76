"""``kdbench tune``: run a protocol's Optuna studies with one trial budget for every strategy.

Each trial draws the strategy's declared search space (its ``HParam`` ranges: no table here),
trains the study's template Job with those values on the (N, seed) training subset, reports
the validation pseudo-Dice of that subset after every validated epoch to the pruner, and
returns the last one. The test set is never read: trials train only (no prediction, no
scoring). Complete and pruned trials count towards ``tuning.trials``; a trial left RUNNING by a
killed tuner is marked FAIL on the next start and does not count, so a rerun continues the
study without losing or repeating a finished trial (single-worker storage: SQLite).

The record: an MLflow experiment ``kdbench/<protocol>/tuning``, one parent run per study, one
nested run per trial (parameters, per-epoch validation curves, its Optuna state).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.engine.execute import RunSettings
from kdbench.errors import KdbenchError
from kdbench.registry import Registry
from kdbench.tuning.studies import StudyTarget

STUDY_TAG = "kdbench.study"
COUNTED = ("COMPLETE", "PRUNED")


@dataclass
class StudySummary:
    """Where a study stands: its trial counts, best trial and history."""

    target: StudyTarget
    complete: int
    pruned: int
    failed: int
    budget: int
    best_value: float | None
    best_params: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def counted(self) -> int:
        """Trials that count towards the budget (complete and pruned)."""
        return self.complete + self.pruned


def summarise(target: StudyTarget, storage: str, budget: int) -> StudySummary | None:
    """The summary of a study, ``None`` when it does not exist yet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=target.name, storage=storage)
    except KeyError:
        return None
    states = [t.state.name for t in study.trials]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    history = [{"number": t.number, "state": t.state.name, "value": t.value,
                "epochs": len(t.intermediate_values), "params": t.params}
               for t in study.trials]
    return StudySummary(target, states.count("COMPLETE"), states.count("PRUNED"),
                        states.count("FAIL"), budget, None if best is None else best.value,
                        {} if best is None else dict(best.params), history)


class _Tuner:
    def __init__(self, settings: RunSettings, registry: Registry, storage: str,
                 progress: Callable[[str], None]) -> None:
        import optuna

        from kdbench.data.protocol_data import ensure_data
        from kdbench.plan import build_plan
        from kdbench.protocol import load_protocol
        from kdbench.tracking import default_tracking_uri

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # kdbench prints its own lines
        self.settings, self.registry, self.storage, self.progress = (
            settings, registry, storage, progress)
        from kdbench.tuning.studies import study_targets

        self.protocol = load_protocol(settings.protocol_path, registry)
        self.plan = build_plan(self.protocol, registry)
        self.targets = study_targets(self.plan, registry)  # bad input stops here, before data
        if not self.targets:
            raise KdbenchError(f"protocol {self.protocol.name!r} has no strategy with "
                               "`hparams: tuned` (and a `tuning:` section); nothing to tune")
        settings.tracking_uri = settings.tracking_uri or default_tracking_uri()
        self.data = ensure_data(self.protocol, registry, settings.data_dir)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=settings.tracking_uri)
        name = f"kdbench/{self.protocol.name}/tuning"
        found = self.client.get_experiment_by_name(name)
        self.experiment = (found.experiment_id if found else
                           self.client.create_experiment(name, tags={
                               "kdbench.protocol": self.protocol.name}))

    def dependencies_first(self, job_id: str) -> None:
        """Run (or find complete) every Job the template depends on, in order."""
        from kdbench.engine.execute import execute_job

        job = self.plan.job(job_id)
        for dep in sorted(job.depends_on.values()):
            self.dependencies_first(dep)
            execute_job(dep, self.settings, self.registry)

    def parent_run(self, target: StudyTarget) -> str:
        runs = self.client.search_runs([self.experiment],
                                       filter_string=f"tags.`{STUDY_TAG}` = '{target.name}'",
                                       max_results=1)
        if runs:
            return runs[0].info.run_id
        budget = self.protocol.tuning
        run = self.client.create_run(self.experiment, run_name=target.name, tags={
            STUDY_TAG: target.name, "kdbench.strategy": target.label,
            "kdbench.scenario": target.scenario, "kdbench.n": str(target.n),
            "kdbench.seed": str(target.template.seed), "kdbench.storage": self.storage,
            "kdbench.template_job": target.template.id,
            **{f"kdbench.tuning.{k}": str(v) for k, v in budget.model_dump().items()}})
        return run.info.run_id

    def tune(self, target: StudyTarget) -> StudySummary:
        import optuna

        from kdbench.tuning.studies import make_pruner, make_sampler

        budget = self.protocol.tuning
        self.dependencies_first(target.template.id)
        study = optuna.create_study(
            study_name=target.name, storage=self.storage, direction="maximize",
            load_if_exists=True, pruner=make_pruner(budget.pruner, self.protocol.training.epochs))
        for stale in study.trials:
            if stale.state == optuna.trial.TrialState.RUNNING:
                study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
                self._killed(target, stale.number)
        # a resumed study draws on from where it stopped, not from the first draws again
        study.sampler = make_sampler(budget.sampler, budget.seed + len(study.trials))
        parent = self.parent_run(target)
        while True:
            counted = sum(t.state.name in COUNTED for t in study.trials)
            if counted >= budget.trials:
                break
            self.progress(f"{target.name}: trial {counted + 1} of {budget.trials}")
            study.optimize(lambda trial: self.trial(trial, target, parent), n_trials=1,
                           catch=())
        summary = summarise(target, self.storage, budget.trials)
        assert summary is not None
        self._finish_parent(parent, summary)
        return summary

    def trial(self, trial: Any, target: StudyTarget, parent: str) -> float:
        import optuna
        from mlflow.entities import Metric, Param, RunTag

        from kdbench.engine.job import train_job
        from kdbench.tuning.studies import search_space, trial_job

        cls = self.registry.strategies.get(target.template.component)
        drawn = {name: hparam.suggest(trial, name)
                 for name, hparam in search_space(target.template, self.registry).items()}
        job = trial_job(target.template, cls.resolve_hparams(drawn))
        run = self.client.create_run(self.experiment, run_name=f"trial {trial.number}", tags={
            "mlflow.parentRunId": parent, STUDY_TAG: target.name,
            "kdbench.trial": str(trial.number), "kdbench.job_id": job.id,
            "kdbench.optuna_state": "RUNNING"})
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(f"hparams.{k}", str(v))
                                              for k, v in sorted(job.hparams.items())])
        last: list[float] = []

        def report(epoch: Any) -> None:
            values = {"val_dice_mean": epoch.mean_val_dice, "val_loss": epoch.val_loss}
            for region, dice in zip(("WT", "TC", "ET"), epoch.val_dice, strict=False):
                values[f"val_dice_{region}"] = dice
            self.client.log_batch(run_id, metrics=[Metric(k, float(v), 0, epoch.epoch)
                                                   for k, v in values.items()])
            last.append(float(epoch.mean_val_dice))
            trial.report(float(epoch.mean_val_dice), epoch.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch.epoch}")

        folder = (Path(self.settings.runs_dir) / self.protocol.name / "tuning"
                  / target.folder_name / f"trial-{trial.number:04d}")
        folder.mkdir(parents=True, exist_ok=True)
        state, status = "FAIL", "FAILED"
        try:
            train_job(job, self.plan, self.registry, self.data, self.settings.runs_dir, folder,
                      device=self.settings.device, data_workers=self.settings.data_workers,
                      compile=self.settings.compile, callbacks=[report])
            state, status = "COMPLETE", "FINISHED"
        except optuna.TrialPruned:
            state, status = "PRUNED", "FINISHED"
            raise
        finally:
            self.client.log_batch(run_id, tags=[RunTag("kdbench.optuna_state", state)])
            self.client.set_terminated(run_id, status=status)
        if not last:
            raise RuntimeError(f"trial {trial.number} of {target.name} trained without a "
                               "validation epoch")
        return last[-1]

    def _killed(self, target: StudyTarget, number: int) -> None:
        """The MLflow run of a trial whose tuner was killed: marked FAIL and KILLED."""
        runs = self.client.search_runs(
            [self.experiment], filter_string=f"tags.`{STUDY_TAG}` = '{target.name}' and "
            f"tags.`kdbench.trial` = '{number}'", max_results=10)
        for run in runs:
            if run.info.status == "RUNNING":
                self.client.set_tag(run.info.run_id, "kdbench.optuna_state", "FAIL")
                self.client.set_terminated(run.info.run_id, status="KILLED")

    def _finish_parent(self, parent: str, summary: StudySummary) -> None:
        from mlflow.entities import Metric, Param, RunTag

        logged = {p for p in self.client.get_run(parent).data.params}
        params = [Param(f"best.{k}", str(v)) for k, v in sorted(summary.best_params.items())
                  if f"best.{k}" not in logged]
        metrics = [Metric(k, float(v), 0, 0) for k, v in (
            ("trials_complete", summary.complete), ("trials_pruned", summary.pruned),
            ("trials_failed", summary.failed)) if v is not None]
        if summary.best_value is not None:
            metrics.append(Metric("best_val_dice_mean", float(summary.best_value), 0, 0))
        tags = [RunTag("kdbench.best_params", repr(summary.best_params))]
        self.client.log_batch(parent, metrics=metrics, params=params, tags=tags)
        self.client.set_terminated(parent, status="FINISHED")


def tune_protocol(settings: RunSettings, registry: Registry, storage: str,
                  progress: Callable[[str], None] = lambda _: None) -> list[StudySummary]:
    """Run (or continue) every study of the protocol up to its trial budget.

    Raises:
        KdbenchError: no ``tuned`` strategy in the protocol, bad input, or a trial that failed
            (its study keeps every finished trial; rerun to continue).
    """
    tuner = _Tuner(settings, registry, storage, progress)
    return [tuner.tune(target) for target in tuner.targets]


def show(settings: RunSettings, registry: Registry, storage: str) -> list[StudySummary | None]:
    """The summary of every study of the protocol (``None`` for one not started)."""
    from kdbench.plan import build_plan
    from kdbench.protocol import load_protocol
    from kdbench.tuning.studies import study_targets

    protocol = load_protocol(settings.protocol_path, registry)
    plan = build_plan(protocol, registry)
    return [summarise(t, storage, protocol.tuning.trials if protocol.tuning else 0)
            for t in study_targets(plan, registry)]


def study_summaries(plan: Any, registry: Registry, storage: str) -> list[StudySummary]:
    """The existing studies of a plan (for the report's budget table)."""
    from kdbench.tuning.studies import study_targets

    budget = plan.protocol.tuning.trials if plan.protocol.tuning else 0
    found = [summarise(t, storage, budget) for t in study_targets(plan, registry)]
    return [s for s in found if s is not None]

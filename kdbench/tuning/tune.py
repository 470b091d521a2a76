"""``kdbench tune``: run a protocol's Optuna studies with one trial budget for every strategy.

Each trial draws the strategy's declared search space (its ``HParam`` ranges: no table here),
trains the study's template Job with those values on the (N, seed) training subset, reports
the validation pseudo-Dice of that subset after every validated epoch to the pruner, and
returns the last one. The test set is never read: trials train only (no prediction, no
scoring). Complete and pruned trials count towards ``tuning.trials``; failed ones do not.

One worker on SQLite (the default): a trial left RUNNING by a killed tuner is marked FAIL on
the next start, so a rerun continues the study without losing or repeating a finished trial.

Several workers on one shared storage (PostgreSQL or a journal file, see
:func:`kdbench.tuning.studies.open_storage`), started by ``kdbench tune --workers K`` on one
machine or one by one (``--worker-index``, a SLURM array): nothing is failed at start (the
RUNNING trials may be other workers' live ones). Every running trial beats (Optuna's
heartbeat, only inside ``study.optimize``); a trial without a beat for the grace period is
failed by whichever worker looks next (``fail_stale_trials``, also called while waiting), its
parameters are queued again as a WAITING trial by the retry callback, and its MLflow run is
marked KILLED / FAIL. The budget is exact, with no overshoot and no lost slot:

- before a trial a worker counts C (COMPLETE + PRUNED) and R (RUNNING): it stops when
  C >= budget, waits (polling, failing stale trials) when C + R >= budget — the running
  trials end either counted or failed, and a failed one frees its slot or comes back as a
  WAITING retry — and otherwise runs one trial (``optimize(n_trials=1)``, whose ``ask`` takes
  a WAITING retry first);
- two workers can pass that test at once for the last slot, so the trial itself claims its
  slot first thing (before drawing, before its MLflow run): with C and A, the number of
  RUNNING or WAITING trials with a *smaller number* than its own, it goes on only when
  C + A < budget. Otherwise it is a surplus trial: user attribute ``kdbench.surplus``, state
  FAIL (not counted, not a failure in the summary, no MLflow run; a surplus retry is queued
  again so its parameters are not lost). Why this cannot overshoot: trial numbers are given
  in creation order (the storage locks the study row / orders its log), so when the
  highest-numbered counted trial claimed its slot, every other trial that ends up counted
  already existed and was counted, running or waiting — hence counted in C + A — and
  C + A < budget. Why nothing is lost: a surplus trial only ever gives way to a trial that
  was counted, running or waiting, and a worker never waits while C + R < budget.

Sampler seeds differ per worker (``seed + 100003 * worker index + trials so far``: the same
seed and history would draw the same values), and TPE uses the "constant liar" so that
workers do not draw next to each other's running trials.

The record: an MLflow experiment ``kdbench/<protocol>/tuning``, one parent run per study, one
nested run per trial (parameters, per-epoch validation curves, its Optuna state).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdbench.engine.execute import ExecutionSettings
from kdbench.errors import KdbenchError
from kdbench.registry import Registry
from kdbench.tuning.studies import GRACE, HEARTBEAT, StudyTarget
from kdbench.tuning.summary import SURPLUS_ATTR, StudySummary, summarise

STUDY_TAG = "kdbench.study"
COUNTED = ("COMPLETE", "PRUNED")
IN_FLIGHT = ("RUNNING", "WAITING")
WORKER_ATTR = "kdbench.worker"  # trial user attributes: which worker ran it, on which host:pid
HOST_ATTR = "kdbench.host"
SEED_STRIDE = 100003
ENV_ARRAY_INDEX = "SLURM_ARRAY_TASK_ID"
LAUNCHED_ENV = "KDBENCH_TUNE_LAUNCHED"  # set for the workers `--workers K` starts


class SurplusTrial(Exception):
    """A trial started when other trials already covered the study's budget."""


class _QuietSurplus(logging.Filter):
    """Drops Optuna's "Trial N failed" warnings (with traceback) of surplus trials: kdbench
    prints its own line for them."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(f"Trial {n} failed") for n in self.numbers)


class _Tuner:
    def __init__(self, settings: ExecutionSettings, registry: Registry, storage: str,
                 progress: Callable[[str], None], *, workers: int = 1, worker_index: int = 0,
                 heartbeat: int = HEARTBEAT, grace: int = GRACE) -> None:
        import optuna

        from kdbench.data.protocol_data import ensure_data
        from kdbench.plan import build_plan
        from kdbench.protocol import load_protocol
        from kdbench.tracking import default_tracking_uri
        from kdbench.tuning.studies import is_shared, open_storage, study_targets

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # kdbench prints its own lines
        self.settings, self.registry, self.url = settings, registry, storage
        self.worker_index = worker_index
        self.protocol = load_protocol(settings.protocol_path, registry)
        self.plan = build_plan(self.protocol, registry)
        self.targets = study_targets(self.plan, registry)  # bad input stops here, before data
        if not self.targets:
            raise KdbenchError(f"protocol {self.protocol.name!r} has no strategy with "
                               "`hparams: tuned` (and a `tuning:` section); nothing to tune")
        self.storage = open_storage(storage, workers=max(workers, worker_index + 1),
                                    heartbeat=heartbeat, grace=grace)
        self.shared = is_shared(self.storage)
        self.poll = max(0.5, min(5.0, heartbeat / 2))
        self._seen_failed: dict[str, set[int]] = {}
        self._quiet = _QuietSurplus()
        if self.shared:
            logging.getLogger("optuna.study._optimize").addFilter(self._quiet)
        self.progress = ((lambda line: progress(f"worker {worker_index}: {line}"))
                         if self.shared else progress)
        settings.tracking_uri = settings.tracking_uri or default_tracking_uri()
        self.data = ensure_data(self.protocol, registry, settings.data_dir)
        from kdbench.tracking import ensure_experiment, mlflow_client

        self.client = mlflow_client(settings.tracking_uri)  # a fresh SQLite file safely
        self.experiment = ensure_experiment(  # safe when workers create it at once
            self.client, f"kdbench/{self.protocol.name}/tuning",
            tags={"kdbench.protocol": self.protocol.name})

    def dependencies_first(self, job_id: str) -> None:
        """Run (or find complete) every Job the template depends on, in order."""
        from kdbench.engine.execute import execute_job

        job = self.plan.job(job_id)
        for dep in sorted(job.depends_on.values()):
            self.dependencies_first(dep)
            execute_job(self.plan.spec(dep), self.settings, self.registry)

    def parent_run(self, target: StudyTarget) -> str:
        """The study's MLflow parent run, created by the first worker; workers that create one
        at the same instant all keep the oldest and delete their own."""
        created = None
        runs = self._parents(target)
        if not runs:
            from kdbench.tuning.studies import display_url

            budget = self.protocol.tuning
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

    def prepare(self, target: StudyTarget) -> tuple[Any, str]:
        """The template's dependencies run, the study (created or loaded) and its parent run."""
        import optuna

        from kdbench.tuning.studies import make_pruner

        self.dependencies_first(target.template.id)
        study = optuna.create_study(
            study_name=target.name, storage=self.storage, direction="maximize",
            load_if_exists=True,
            pruner=make_pruner(self.protocol.tuning.pruner, self.protocol.training.epochs))
        return study, self.parent_run(target)

    def tune(self, target: StudyTarget) -> StudySummary:
        import optuna

        from kdbench.tuning.studies import make_sampler

        budget = self.protocol.tuning
        study, parent = self.prepare(target)
        if not self.shared:
            for stale in study.trials:
                if stale.state == optuna.trial.TrialState.RUNNING:
                    study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
                    self._killed(target, stale.number)
        # a resumed study draws on from where it stopped, not from the first draws again; each
        # worker from its own seed
        study.sampler = make_sampler(
            budget.sampler, budget.seed + SEED_STRIDE * self.worker_index + len(study.trials),
            shared=self.shared)
        if self.shared:
            self._tune_shared(study, target, parent)
        else:
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

    def _tune_shared(self, study: Any, target: StudyTarget, parent: str) -> None:
        """Trials until the study's budget is counted, alongside other workers (module
        docstring)."""
        import time

        import optuna

        budget = self.protocol.tuning.trials
        current: dict[str, int] = {}

        def objective(trial: Any) -> float:
            current["number"] = trial.number
            try:
                counted, ahead, retry_of = self._claim(study, trial, budget)
            except SurplusTrial as surplus:
                self.progress(f"{target.name}: {surplus}")
                raise
            retry = "" if retry_of is None else f", retry of trial {retry_of}"
            self.progress(f"{target.name}: trial {trial.number} ({counted} of {budget} counted, "
                          f"{ahead} earlier ones running or queued{retry})")
            tags = {} if retry_of is None else {"kdbench.retry_of": str(retry_of)}
            return self.trial(trial, target, parent, tags)

        waiting_for = None
        while True:
            self._fail_stale(study, target)
            states = [t.state.name for t in study.get_trials(deepcopy=False)]
            counted = sum(state in COUNTED for state in states)
            running = states.count("RUNNING")
            if counted >= budget:
                return
            if counted + running >= budget:
                if waiting_for != (counted, running):
                    self.progress(f"{target.name}: {counted} of {budget} trials counted, "
                                  f"{running} running cover the rest; waiting")
                    waiting_for = (counted, running)
                time.sleep(self.poll)
                continue
            waiting_for = None
            try:
                study.optimize(objective, n_trials=1, catch=(SurplusTrial,))
                self._quiet.numbers.clear()
            except optuna.exceptions.UpdateFinishedTrialError:
                # this worker stalled past the grace period: another one failed its trial as
                # stale and queued it again
                self.progress(f"{target.name}: trial {current['number']} of this worker was "
                              "failed as stale by another one (no heartbeat within the grace "
                              "period) and queued again; going on")
                self._killed(target, current["number"], running_only=False)

    def _claim(self, study: Any, trial: Any, budget: int) -> tuple[int, int, int | None]:
        """Go on with ``trial`` only when the counted trials and the RUNNING or WAITING trials
        numbered before it leave a slot of the budget (returns both counts and the number of
        the stale trial it retries, if any); else raise :class:`SurplusTrial` (module
        docstring)."""
        import optuna

        trials = study.get_trials(deepcopy=False)
        counted = sum(t.state.name in COUNTED for t in trials)
        ahead = sum(t.number < trial.number and t.state.name in IN_FLIGHT for t in trials)
        trial.set_user_attr(WORKER_ATTR, self.worker_index)
        trial.set_user_attr(HOST_ATTR, f"{_hostname()}:{os.getpid()}")
        frozen = study._storage.get_trial(trial._trial_id)
        retry_of = frozen.system_attrs.get("failed_trial")  # set by the retry callback
        if counted + ahead < budget:
            return counted, ahead, retry_of
        if retry_of is not None:  # a retry of a stale trial: queue it again
            study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState.WAITING, params=frozen.params,
                distributions=frozen.distributions,
                user_attrs={k: v for k, v in frozen.user_attrs.items()
                            if k not in (WORKER_ATTR, HOST_ATTR)},
                system_attrs=frozen.system_attrs))
        trial.set_user_attr(SURPLUS_ATTR, True)
        self._quiet.numbers.add(trial.number)
        raise SurplusTrial(f"trial {trial.number} is not needed: {counted} counted and {ahead} "
                           f"earlier trials in flight cover the budget of {budget}")

    def _fail_stale(self, study: Any, target: StudyTarget) -> None:
        """Fail the trials whose worker stopped beating (their retries are queued by the
        storage's callback), and mark the MLflow runs of such trials FAIL and KILLED."""
        import warnings

        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        failed = {t.number for t in study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.FAIL,))}
        seen = self._seen_failed.setdefault(target.name, set())
        if not failed - seen:  # each FAIL trial is looked up once per worker
            return
        seen |= failed
        runs = self.client.search_runs(
            [self.experiment], filter_string=f"tags.`{STUDY_TAG}` = '{target.name}' and "
            "attributes.status = 'RUNNING'", max_results=1000)
        for run in runs:
            number = run.data.tags.get("kdbench.trial")
            if number is not None and int(number) in failed:
                self._killed(target, int(number))

    def trial(self, trial: Any, target: StudyTarget, parent: str,
              tags: dict[str, str] | None = None) -> float:
        import optuna
        from mlflow.entities import Metric, Param, RunTag

        from kdbench.engine.job import train_model
        from kdbench.tuning.studies import search_space, trial_job

        cls = self.registry.strategies.get(target.template.component)
        drawn = {name: hparam.suggest(trial, name)
                 for name, hparam in search_space(target.template, self.registry).items()}
        job = trial_job(target.template, cls.resolve_hparams(drawn))
        run = self.client.create_run(self.experiment, run_name=f"trial {trial.number}", tags={
            "mlflow.parentRunId": parent, STUDY_TAG: target.name,
            "kdbench.trial": str(trial.number), "kdbench.job_id": job.id,
            "kdbench.optuna_state": "RUNNING", **(tags or {})})
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
            train_model(job, self.plan, self.registry, self.data, self.settings.runs_dir, folder,
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

    def _killed(self, target: StudyTarget, number: int, running_only: bool = True) -> None:
        """The MLflow run of a trial whose tuner was killed: marked FAIL and KILLED."""
        runs = self.client.search_runs(
            [self.experiment], filter_string=f"tags.`{STUDY_TAG}` = '{target.name}' and "
            f"tags.`kdbench.trial` = '{number}'", max_results=10)
        for run in runs:
            if run.info.status == "RUNNING" or not running_only:
                self.client.set_tag(run.info.run_id, "kdbench.optuna_state", "FAIL")
                self.client.set_terminated(run.info.run_id, status="KILLED")

    def _finish_parent(self, parent: str, summary: StudySummary) -> None:
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


def tune_protocol(settings: ExecutionSettings, registry: Registry, storage: str,
                  progress: Callable[[str], None] = lambda _: None, *, workers: int = 1,
                  worker_index: int | None = None, heartbeat: int = HEARTBEAT,
                  grace: int = GRACE) -> list[StudySummary]:
    """Run (or continue) every study of the protocol up to its trial budget.

    Args:
        workers: worker processes to start on this machine (``kdbench tune --worker-index``
            subprocesses, numbered ``worker_index * workers + j``); 1: tune in this process.
        worker_index: this worker's number among all workers of the studies (seeds its
            sampler; > 0 needs a shared storage); default ``$SLURM_ARRAY_TASK_ID``, else 0.
        heartbeat, grace: seconds between heartbeats of a running trial, and without one
            before it is failed and retried (shared storages only).

    Raises:
        KdbenchError: no ``tuned`` strategy in the protocol, bad input, SQLite storage for
            several workers, or a trial that failed (its study keeps every finished trial;
            rerun to continue).
    """
    if worker_index is None:
        worker_index = int(os.environ.get(ENV_ARRAY_INDEX) or 0)
    if workers > 1:
        return _launch(settings, registry, storage, progress, workers, worker_index, heartbeat,
                       grace)
    tuner = _Tuner(settings, registry, storage, progress, worker_index=worker_index,
                   heartbeat=heartbeat, grace=grace)
    return [tuner.tune(target) for target in tuner.targets]


def _launch(settings: ExecutionSettings, registry: Registry, storage: str,
            progress: Callable[[str], None], workers: int, base: int, heartbeat: int,
            grace: int) -> list[StudySummary]:
    """Prepare every study here (data, dependency Jobs, studies, parent runs), then run
    ``workers`` worker processes on them and wait for all."""
    import subprocess
    import sys

    from kdbench.tracking import ENV_TRACKING_URI
    from kdbench.tuning.studies import ENV_STORAGE

    tuner = _Tuner(settings, registry, storage, progress, workers=workers,
                   worker_index=base * workers, heartbeat=heartbeat, grace=grace)
    for target in tuner.targets:
        tuner.prepare(target)
    command = [sys.executable, "-m", "kdbench", *settings.to_args(), "tune",
               str(settings.protocol_path), "--data-dir", str(settings.data_dir),
               "--runs-dir", str(settings.runs_dir), "--device", settings.device,
               "--data-workers", str(settings.data_workers), "--heartbeat", str(heartbeat),
               "--grace", str(grace), *(["--compile"] if settings.compile else [])]
    # the URLs may hold passwords: passed in the environment, not on command lines
    env = {**os.environ, ENV_STORAGE: storage, ENV_TRACKING_URI: str(settings.tracking_uri),
           LAUNCHED_ENV: "1"}
    indices = [base * workers + j for j in range(workers)]
    progress(f"starting {workers} tuning workers ({', '.join(map(str, indices))})")
    procs = []
    try:
        for index in indices:
            procs.append(subprocess.Popen([*command, "--worker-index", str(index)], env=env))
        codes = [proc.wait() for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    budget = tuner.protocol.tuning.trials
    summaries = [summarise(target, tuner.storage, budget) for target in tuner.targets]
    failed = [f"worker {i} (exit code {code})" for i, code in zip(indices, codes, strict=True)
              if code != 0]
    short = [s.target.name for s in summaries if s is None or s.counted < s.budget]
    if failed and short:
        raise KdbenchError(
            f"tuning stopped: {', '.join(failed)} failed (see the output above) and "
            f"{len(short)} studies are below their budget ({', '.join(short)}); fix the cause "
            "and rerun the same command to continue")
    if failed:
        progress(f"warning: {', '.join(failed)} failed (see the output above); the other "
                 "workers completed every study's budget")
    return [s for s in summaries if s is not None]


def _hostname() -> str:
    import socket

    return socket.gethostname()

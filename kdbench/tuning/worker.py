"""One tuning worker: the trial loop of :func:`kdbench.tuning.tune.tune_protocol`, alone on its
storage or alongside other workers on a shared one, and the trial itself.

One worker on SQLite (the default): a trial left RUNNING by a killed tuner is marked FAIL on
the next start, so a rerun continues the study without losing or repeating a finished trial.

Several workers on one shared storage (PostgreSQL or a journal file, see
:func:`kdbench.tuning.studies.open_storage`), started by ``kdbench tune --workers K`` on one
machine (:mod:`kdbench.tuning.launch`) or one by one (``--worker-index``, a SLURM array):
nothing is failed at start (the RUNNING trials may be other workers' live ones). Every running
trial beats (Optuna's heartbeat, only inside ``study.optimize``); a trial without a beat for the
grace period is failed by whichever worker looks next (``fail_stale_trials``, also called while
waiting), its parameters are queued again as a WAITING trial by the retry callback, and its
MLflow run is marked KILLED / FAIL. The budget is exact, with no overshoot and no lost slot:

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

COUNTED = ("COMPLETE", "PRUNED")
IN_FLIGHT = ("RUNNING", "WAITING")
WORKER_ATTR = "kdbench.worker"  # trial user attributes: which worker ran it, on which host:pid
HOST_ATTR = "kdbench.host"
SEED_STRIDE = 100003


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


class Tuner:
    """A protocol's studies as one worker sees them: its plan, data, storage and record."""

    def __init__(self, settings: ExecutionSettings, registry: Registry, storage: str,
                 progress: Callable[[str], None], *, workers: int = 1, worker_index: int = 0,
                 heartbeat: int = HEARTBEAT, grace: int = GRACE) -> None:
        import optuna

        from kdbench.data.protocol_data import ensure_data
        from kdbench.plan import build_plan
        from kdbench.protocol import load_protocol
        from kdbench.tracking import default_tracking_uri
        from kdbench.tuning.record import TuningRecord
        from kdbench.tuning.studies import is_shared, open_storage, study_targets

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # kdbench prints its own lines
        self.settings, self.registry = settings, registry
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
        self.record = TuningRecord(settings.tracking_uri, self.protocol.name, storage,
                                   shared=self.shared)

    def dependencies_first(self, job_id: str) -> None:
        """Run (or find complete) every Job the template depends on, in order."""
        from kdbench.engine.execute import execute_job

        job = self.plan.job(job_id)
        for dep in sorted(job.depends_on.values()):
            self.dependencies_first(dep)
            execute_job(self.plan.spec(dep), self.settings, self.registry)

    def prepare(self, target: StudyTarget) -> tuple[Any, str]:
        """The template's dependencies run, the study (created or loaded) and its parent run."""
        import optuna

        from kdbench.tuning.studies import make_pruner

        self.dependencies_first(target.template.id)
        study = optuna.create_study(
            study_name=target.name, storage=self.storage, direction="maximize",
            load_if_exists=True,
            pruner=make_pruner(self.protocol.tuning.pruner, self.protocol.training.epochs))
        return study, self.record.parent_run(target, self.protocol.tuning)

    def tune(self, target: StudyTarget) -> StudySummary:
        import optuna

        from kdbench.tuning.studies import make_sampler

        budget = self.protocol.tuning
        study, parent = self.prepare(target)
        if not self.shared:
            for stale in study.trials:
                if stale.state == optuna.trial.TrialState.RUNNING:
                    study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
                    self.record.killed(target, stale.number)
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
        self.record.finish_parent(parent, summary)
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
                self.record.killed(target, current["number"], running_only=False)

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
        self.record.kill_failed(target, failed)

    def trial(self, trial: Any, target: StudyTarget, parent: str,
              tags: dict[str, str] | None = None) -> float:
        """Train one drawn Job, reporting each validated epoch's mean Dice to the pruner; the
        last one."""
        import optuna

        from kdbench.engine.job import train_model
        from kdbench.tuning.studies import search_space, trial_job

        cls = self.registry.strategies.get(target.template.component)
        drawn = {name: hparam.suggest(trial, name)
                 for name, hparam in search_space(target.template, self.registry).items()}
        job = trial_job(target.template, cls.resolve_hparams(drawn))
        run_id = self.record.start_trial(target, parent, trial.number, job, tags)
        last: list[float] = []

        def report(epoch: Any) -> None:
            self.record.log_epoch(run_id, epoch)
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
            self.record.end_trial(run_id, state, status)
        if not last:
            raise RuntimeError(f"trial {trial.number} of {target.name} trained without a "
                               "validation epoch")
        return last[-1]


def _hostname() -> str:
    import socket

    return socket.gethostname()

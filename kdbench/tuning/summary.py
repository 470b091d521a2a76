"""Where a protocol's tuning studies stand: trial counts, the best trial, the history
(``kdbench tune --show``, the tuner's end-of-study line and the report's budget table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kdbench.engine.execute import ExecutionSettings
from kdbench.registry import Registry
from kdbench.tuning.studies import StudyTarget

SURPLUS_ATTR = "kdbench.surplus"  # trial user attribute: failed because the budget was covered


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
    surplus: int = 0  # FAIL trials that only gave way to others (several workers), not failures
    best_number: int | None = None  # the best trial's number

    @property
    def finished(self) -> bool:
        """Its budget of trials is counted: its best values are final."""
        return self.counted >= self.budget and self.best_number is not None

    @property
    def counted(self) -> int:
        """Trials that count towards the budget (complete and pruned)."""
        return self.complete + self.pruned


def summarise(target: StudyTarget, storage: Any, budget: int) -> StudySummary | None:
    """The summary of a study, ``None`` when it does not exist yet (``storage``: a URL or an
    opened storage)."""
    import optuna

    from kdbench.tuning.studies import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=target.name, storage=open_storage(storage))
    except KeyError:
        return None
    trials = study.get_trials(deepcopy=False)
    states = [trial_state(t) for t in trials]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    history = [{"number": t.number, "state": state, "value": t.value,
                "epochs": len(t.intermediate_values), "params": t.params}
               for t, state in zip(trials, states, strict=True)]
    return StudySummary(target, states.count("COMPLETE"), states.count("PRUNED"),
                        states.count("FAIL"), budget, None if best is None else best.value,
                        {} if best is None else dict(best.params), history,
                        states.count("SURPLUS"), None if best is None else best.number)


def trial_state(trial: Any) -> str:
    """A trial's Optuna state name, SURPLUS for a FAIL that gave way to other workers."""
    if trial.state.name == "FAIL" and trial.user_attrs.get(SURPLUS_ATTR):
        return "SURPLUS"
    return trial.state.name


def show(settings: ExecutionSettings, registry: Registry, storage: str
         ) -> list[StudySummary | None]:
    """The summary of every study of the protocol (``None`` for one not started)."""
    from kdbench.plan import build_plan
    from kdbench.protocol import load_protocol
    from kdbench.tuning.studies import study_targets

    plan = build_plan(load_protocol(settings.protocol_path, registry), registry)
    budget = plan.protocol.tuning.trials if plan.protocol.tuning else 0
    return [summarise(t, storage, budget) for t in study_targets(plan, registry)]


def study_summaries(plan: Any, registry: Registry, storage: str) -> list[StudySummary]:
    """The existing studies of a plan (for the report's budget table)."""
    from kdbench.tuning.studies import study_targets

    budget = plan.protocol.tuning.trials if plan.protocol.tuning else 0
    found = [summarise(t, storage, budget) for t in study_targets(plan, registry)]
    return [s for s in found if s is not None]

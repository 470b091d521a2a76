"""A plan whose ``tuned`` Jobs carry their study's best hyper-parameters.

:func:`kdbench.plan.build_plan` gives a ``tuned`` strategy's Jobs the placeholder
``{"tuned": budget}``: the Job a study tunes (its template). Once the study has counted its
whole budget of trials, :func:`resolved_plan` replaces each such Job by the Job of the best
trial's values: those values (with the strategy's defaults for the rest) and the study's name
and best trial number enter its spec, so its id changes whenever the best values do. A Job
whose study is missing or unfinished keeps its placeholder, and execution refuses it with the
command that tunes it: a Job is never run against a half-finished study, and a finished one's
result is never reused for other values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kdbench.errors import KdbenchError
from kdbench.hashing import content_id
from kdbench.registry import Registry
from kdbench.types import Job, Plan


def resolved_plan(plan: Plan, registry: Registry, storage: str | None) -> Plan:
    """``plan`` with every ``tuned`` Job of a finished study resolved (module docstring);
    unchanged (the same object) when it has no ``tuned`` Job."""
    if not any(j.pending_tuning for j in plan.jobs):
        return plan
    from kdbench.tuning.studies import default_storage, study_targets
    from kdbench.tuning.summary import summarise

    storage = storage or default_storage()
    budget = plan.protocol.tuning.trials
    finished: list[Any] = []
    for target in study_targets(plan, registry):
        summary = summarise(target, storage, budget)
        if summary is not None and summary.finished:
            finished.append(summary)
    renamed: dict[str, str] = {}
    jobs = []
    for job in plan.jobs:  # dependencies come first: their new ids are known
        depends_on = {role: renamed.get(dep, dep) for role, dep in job.depends_on.items()}
        summary = _study_of(job, finished)
        spec = {**job.spec, "depends_on": depends_on}
        hparams = job.hparams
        if summary is not None:
            cls = registry.strategies.get(job.component)
            hparams = cls.resolve_hparams(summary.best_params)
            spec.update(hparams=hparams, tuned={"study": summary.target.name,
                                                "trial": summary.best_number,
                                                "budget": job.hparams["tuned"]})
        new = dataclasses.replace(job, id=content_id(spec), hparams=hparams,
                                  depends_on=depends_on, spec=spec)
        if new.id != job.id:
            renamed[job.id] = new.id
        jobs.append(new)
    return Plan(plan.protocol, jobs)


def _study_of(job: Job, finished: list[Any]) -> Any | None:
    """The finished study serving a ``tuned`` Job: the study of its strategy label and
    scenario at the tuning N (every seed and N of that strategy takes the same values)."""
    return next((s for s in finished if s.target.serves(job)), None)


def pending_message(plan: Plan, jobs: list[Job], registry: Registry, storage: str | None
                    ) -> str:
    """Why ``jobs`` (``tuned``, unresolved) cannot run yet: each study and where it stands."""
    from kdbench.tuning.studies import default_storage, display_url, study_targets
    from kdbench.tuning.summary import summarise

    storage = storage or default_storage()
    budget = plan.protocol.tuning.trials
    lines = []
    for target in study_targets(plan, registry):
        if not any(target.serves(j) for j in jobs):
            continue
        summary = summarise(target, storage, budget)
        state = ("does not exist" if summary is None else
                 f"has counted {summary.counted} of its {budget} trials")
        lines.append(f"study {target.name!r} {state}")
    return (f"{len(jobs)} Job(s) use `tuned` hyper-parameters whose study has not finished in "
            f"{display_url(storage)}: {'; '.join(lines)}; run `kdbench tune "
            f"{plan.protocol.name}.yaml` (or pass the --storage it used) first")


def require_resolved(plan: Plan, jobs: list[Job], registry: Registry, storage: str | None
                     ) -> None:
    """Raise when any of ``jobs`` still waits for its study (before anything trains)."""
    pending = [j for j in jobs if j.pending_tuning]
    if pending:
        raise KdbenchError(pending_message(plan, pending, registry, storage))


def plan_protocol(protocol: Any, registry: Registry, storage: str | None) -> Plan:
    """The plan every command runs and shows: :func:`kdbench.plan.build_plan` with each
    ``tuned`` Job of a finished study resolved."""
    from kdbench.plan import build_plan

    return resolved_plan(build_plan(protocol, registry), registry, storage)

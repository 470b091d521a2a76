"""Which Optuna studies a protocol has, where they live, and what a ``tuned`` Job takes from
them.

One study per (strategy label, scenario, tuning N): its trials train the plan's Job of that
strategy at the tuning N and the protocol's first seed with drawn hyper-parameters, scored by
the validation Dice of that (N, seed) subset. A ``tuned`` Job at any N and seed takes the best
trial's parameters of its study (the one at ``tuning.n``, or at its own N when the protocol
tunes at every N). The study name holds the template Job's id, so an edited protocol (budget,
version, data) never reuses an older study.

Storage: ``KDBENCH_OPTUNA_STORAGE`` or ``--storage`` (any Optuna storage URL), by default the
SQLite file ``optuna/studies.db`` under the working directory — never MLflow's database.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError
from kdbench.hashing import content_id
from kdbench.plan import Job, Plan
from kdbench.registry import Registry

ENV_STORAGE = "KDBENCH_OPTUNA_STORAGE"


def default_storage(root: Path | None = None) -> str:
    """``KDBENCH_OPTUNA_STORAGE``, else ``sqlite:///<root or cwd>/optuna/studies.db``."""
    from kdbench.tracking import local_store

    return local_store(ENV_STORAGE, "optuna/studies.db", root)


@dataclass(frozen=True)
class StudyTarget:
    """One study: the strategy and the plan Job its trials train."""

    name: str
    label: str
    scenario: str
    n: int
    template: Job

    @property
    def folder_name(self) -> str:
        """The study name as a folder name."""
        return self.name.replace("/", "_")


def _role(label: str, scenario: str) -> str:
    return f"strategy {label} @ {scenario}"


def study_targets(plan: Plan, registry: Registry) -> list[StudyTarget]:
    """Every study of the protocol, in protocol order (strategies, scenarios, N)."""
    protocol = plan.protocol
    if protocol.tuning is None:
        return []
    seed = protocol.seeds[0]
    sizes = (protocol.tuning.n,) if protocol.tuning.n else protocol.training_sizes
    targets = []
    for spec in protocol.strategies:
        if spec.hparams != "tuned":
            continue
        for scenario in protocol.scenarios:
            for n in sizes:
                template = _job_with_role(plan, _role(spec.key, scenario.name), n, seed)
                if template is None:
                    raise KdbenchError(
                        f"strategy {spec.key!r} is tuned at N={n}, but the plan has no Job of it "
                        f"at N={n} (scenario {scenario.name!r}, seed {seed}); list N={n} in "
                        "training_sizes so that its teacher and generator Jobs exist")
                if not search_space(template, registry):
                    raise KdbenchError(
                        f"strategy {spec.key!r} is `tuned` but {template.component!r} declares "
                        "no search space (no hyper-parameter with a range or choices); give "
                        "its hparams instead of 'tuned'")
                name = f"{protocol.name}/{spec.key}/{scenario.name}/N{n}/{template.id[:8]}"
                targets.append(StudyTarget(name, spec.key, scenario.name, n, template))
    return targets


def _job_with_role(plan: Plan, role: str, n: int, seed: int) -> Job | None:
    return next((j for j in plan.jobs if role in j.roles and j.n == n and j.seed == seed),
                None)


def target_for(plan: Plan, job: Job, registry: Registry) -> StudyTarget:
    """The study whose best parameters the ``tuned`` Job ``job`` uses."""
    budget = job.hparams["tuned"]
    for target in study_targets(plan, registry):
        if _role(target.label, target.scenario) in job.roles and target.n == budget["n"]:
            return target
    raise KdbenchError(f"Job {job.id} ({job.component}) is tuned but no study of the protocol "
                       "serves it")  # pragma: no cover - the plan builds both from one protocol


def search_space(job: Job, registry: Registry) -> dict[str, Any]:
    """The tunable hyper-parameters of a Job's strategy (name -> HParam), sorted."""
    from kdbench.components.hparams import search_space as tunable

    declared = registry.strategies.get(job.component).hparams
    return {name: declared[name] for name in tunable(declared)}


def trial_job(template: Job, hparams: dict[str, Any]) -> Job:
    """The template Job with concrete hyper-parameters: the Job a plan would hold for them."""
    spec = {**template.spec, "hparams": hparams}
    return dataclasses.replace(template, id=content_id(spec), hparams=hparams, spec=spec)


def best_hparams(plan: Plan, job: Job, registry: Registry, storage: str
                 ) -> tuple[dict[str, Any], StudyTarget]:
    """The resolved hyper-parameters of a ``tuned`` Job: the defaults with its study's best
    trial's values.

    Raises:
        KdbenchError: the study does not exist or has no complete trial (names it and the
            command that tunes it).
    """
    import optuna

    target = target_for(plan, job, registry)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=target.name, storage=storage)
        params = study.best_trial.params
    except (KeyError, ValueError):
        raise KdbenchError(
            f"strategy {target.label!r} is `tuned` but study {target.name!r} has no complete "
            f"trial in {storage}; run `kdbench tune {plan.protocol.name}.yaml` (or pass the "
            "--storage it used)") from None
    cls = registry.strategies.get(job.component)
    return cls.resolve_hparams(params), target


def resolve_tuned(plan: Plan, job: Job, registry: Registry, storage: str | None
                  ) -> tuple[Job, str | None]:
    """``job`` itself, or for a ``tuned`` Job the same Job (same id) with its study's best
    hyper-parameters, and the study's name."""
    if "tuned" not in job.hparams:
        return job, None
    hparams, target = best_hparams(plan, job, registry, storage or default_storage())
    return dataclasses.replace(job, hparams=hparams), target.name


def make_sampler(kind: str, seed: int) -> Any:
    """TPE (default) or random, seeded."""
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(kind: str, epochs: int) -> Any:
    """Hyperband over epochs 1..``epochs`` (reduction factor 3), the median rule (from the
    second trial and the second epoch), or none."""
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
    if kind == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1),
                                          reduction_factor=3)

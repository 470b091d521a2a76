"""The plan: a protocol expanded into a DAG of Jobs, each identified by what defines its result.

A Job is one training (and, for strategies, its prediction and scoring) of one component for
one (N, seed) and one set of modalities. Its id is the hash of the canonical JSON of everything
that defines its result: the protocol's name and version, the component's name and version, the
dataset, split, backbone and training budget, the resolved hyper-parameters (or the tuning
budget), N, the seed, the modalities, and the ids of the Jobs it depends on. A teacher or
generator of an (N, seed) is one Job shared by every student that needs it; a class that is both
a strategy and a teacher (``multi``) gets one Job for both roles when the settings agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kdbench.hashing import content_id
from kdbench.modalities import label
from kdbench.types import Job, ModalityUse, Plan, Role

if TYPE_CHECKING:
    from kdbench.components import Component
    from kdbench.protocol.models import Protocol, ScenarioSpec, StrategySpec
    from kdbench.registry import Registry


class _Builder:
    def __init__(self, protocol: Protocol, registry: Registry) -> None:
        self.protocol = protocol
        self.registry = registry
        self.jobs: dict[str, Job] = {}
        self.common = self._common()

    def _common(self) -> dict[str, Any]:
        p, reg = self.protocol, self.registry
        dataset = reg.datasets.get(p.dataset.source)
        backbone = reg.backbones.get(p.backbone.name)
        return {
            "protocol": {"name": p.name, "version": p.version},
            "dataset": {
                "source": dataset.name,
                "version": dataset.version,
                "options": dataset.validate_options(p.dataset.options).model_dump(mode="json"),
            },
            "split": p.split.model_dump(mode="json"),
            "backbone": {
                "name": backbone.name,
                "version": backbone.version,
                "options": backbone.validate_options(p.backbone.options).model_dump(mode="json"),
            },
            "training": p.training.model_dump(mode="json"),
        }

    def _tuned(self, n: int) -> dict[str, Any]:
        assert self.protocol.tuning is not None  # guaranteed by the protocol checks
        budget = self.protocol.tuning.model_dump(mode="json")
        budget["n"] = budget["n"] or n
        return {"tuned": budget}

    def add(
        self,
        cls: type[Component],
        hparams: dict[str, Any],
        n: int,
        seed: int,
        modalities: ModalityUse,
        depends_on: dict[str, str],
        role: Role,
    ) -> str:
        spec = {
            **self.common,
            "component": {"name": cls.name, "version": cls.version},
            "hparams": hparams,
            "n": n,
            "seed": seed,
            "modalities": modalities.to_json(),
            "depends_on": depends_on,
        }
        job_id = content_id(spec)
        job = self.jobs.get(job_id)
        if job is None:
            job = Job(job_id, cls.name, n, seed, modalities, hparams, depends_on, spec)
            self.jobs[job_id] = job
        if role not in job.roles:
            job.roles.append(role)
        return job_id

    def strategy_jobs(self, spec: StrategySpec, scenario: ScenarioSpec, n: int, seed: int) -> None:
        cls = self.registry.strategies.get(spec.name)
        where = Role("strategy", spec.key, scenario.name)
        hparams = (
            self._tuned(n) if spec.hparams == "tuned" else cls.resolve_hparams(spec.hparams)
        )
        given = {"teacher": (spec.teacher_name, spec.teacher_hparams, spec.teacher_n),
                 "generator": (spec.generator, spec.generator_hparams, None)}
        for plan in cls.modality_uses(scenario.training, scenario.subsets()):
            deps = self._dependencies(cls, given, scenario, plan, n, seed, where)
            self.add(cls, hparams, n, seed, plan, deps, where)

    def _dependencies(self, cls: Any, given: dict[str, tuple[str | None, dict[str, Any],
                                                             int | None]],
                      scenario: ScenarioSpec, plan: ModalityUse, n: int, seed: int, where: Role
                      ) -> dict[str, str]:
        """The Jobs ``cls`` (a strategy, or a teacher that is itself built from others) needs
        for one of its plans: its teacher, then its generator. A teacher with a fixed training
        size is the Job of that size for the seed, whatever the student's N (its own
        dependencies follow it). A generator is scored with the teacher when that teacher reads
        every training modality by itself, else with the generator's own
        ``scoring_teacher``."""
        subset = plan.evaluate[0] if len(plan.evaluate) == 1 else None
        deps: dict[str, str] = {}
        requires = getattr(cls, "requires", ())  # a plain Teacher declares none
        if "teacher" in requires:
            name, overrides, fixed_n = given.get("teacher", (None, {}, None))
            teacher = self.registry.teachers.get(name or cls.default_teacher)
            dep_plan = teacher.teacher_use(scenario.training, subset)
            role = where.of("teacher")
            n_teacher = fixed_n or n
            deps["teacher"] = self.add(
                teacher, teacher.resolve_hparams(overrides), n_teacher, seed, dep_plan,
                self._dependencies(teacher, {}, scenario, dep_plan, n_teacher, seed, role), role)
        if "generator" in requires:
            name, overrides, _ = given.get("generator", (None, {}, None))
            generator = self.registry.generators.get(name or cls.default_generator)
            if subset is None:
                raise ValueError(f"{where.label} @ {where.scenario}: a strategy with a "
                                 "generator must train one model "
                                 f"per available subset, got {len(plan.evaluate)} in one Job")
            role = where.of("generator")
            scorer = deps.get("teacher")
            if scorer is None or self.jobs[scorer].n != n or \
                    self.jobs[scorer].modalities.evaluate != (scenario.training,):
                scorer_cls = self.registry.teachers.get(generator.scoring_teacher)
                scorer = self.add(scorer_cls, scorer_cls.resolve_hparams({}), n, seed,
                                  scorer_cls.teacher_use(scenario.training), {},
                                  role.of("teacher"))
            deps["generator"] = self.add(
                generator, generator.resolve_hparams(overrides), n, seed,
                generator.generator_use(scenario.training, subset), {"teacher": scorer}, role)
        return deps


def build_plan(protocol: Protocol, registry: Registry) -> Plan:
    """Expand a validated protocol into its Jobs.

    The order is fixed by the protocol: for each N, each of its seeds (``seeds_at``), each
    scenario, each strategy in
    the order listed; a dependency comes before its first dependent. The same protocol and
    plugins give the same Jobs, ids and order, byte for byte.

    Args:
        protocol: a protocol checked with :func:`kdbench.protocol.load_protocol`.
        registry: the loaded plugins.
    """
    builder = _Builder(protocol, registry)
    for n in protocol.training_sizes:
        for seed in protocol.seeds_at(n):
            for scenario in protocol.scenarios:
                for spec in protocol.strategies:
                    builder.strategy_jobs(spec, scenario, n, seed)
    return Plan(protocol, list(builder.jobs.values()))


def modality_summary(job: Job) -> str:
    """``t1+t1ce+t2+flair -> t1ce`` (training modalities -> evaluated subsets)."""
    subsets = job.modalities.evaluate
    evaluated = ", ".join(label(s) for s in subsets) if len(subsets) <= 2 else (
        f"{len(subsets)} subsets"
    )
    return f"{label(job.modalities.training)} -> {evaluated or '-'}"

"""The types every layer shares: a leaf module that imports nothing else of kdbench.

- :class:`ModalityUse`: which modalities a Job trains with and which subsets it is scored on;
- :class:`Job`: one resolved, serialisable Job spec (what the plan hands to execution);
- :class:`Plan`: a protocol's Jobs in dependency order;
- :class:`Budget` and :class:`EpochReport`: the training budget a backbone receives and what it
  reports after each epoch.

Components (``kdbench.components``), the plan, the engine and the plugins all import these from
here (plugin authors: from ``kdbench``), so no layer needs a higher one to name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Modalities = tuple[str, ...]


@dataclass(frozen=True)
class ModalityUse:
    """Which modalities one Job trains with and which subsets it is scored on.

    Attributes:
        training: modalities whose images the Job may read while training (the model's own
            inputs and any privileged ones, e.g. a teacher's).
        evaluate: the modality subsets the trained model predicts from at test time.
    """

    training: Modalities
    evaluate: tuple[Modalities, ...]

    def to_json(self) -> dict[str, Any]:
        """Canonical JSON form (lists in channel order)."""
        return {"training": list(self.training), "evaluate": [list(s) for s in self.evaluate]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModalityUse:
        """The inverse of :meth:`to_json`."""
        return cls(tuple(data["training"]), tuple(tuple(s) for s in data["evaluate"]))


#: The kinds of role a Job can play, in display order.
ROLE_KINDS = ("strategy", "teacher", "generator")


@dataclass(frozen=True, order=True)
class Role:
    """How the protocol uses a Job: a strategy's own Job, or a dependency of one.

    Attributes:
        kind: ``strategy``, ``teacher`` or ``generator``.
        label: the strategy's label in the protocol (its ``key``) that the Job serves.
        scenario: the scenario's name.
        via: for a dependency of a dependency, the roles in between, nearest the strategy last
            (``("generator",)`` for the teacher that scores a strategy's generator).

    ``str(role)`` is the form shown and recorded (``strategy kd @ t1ce``, ``teacher of kd @
    t1ce``, ``teacher of generator of genkd @ t1ce``); :meth:`parse` reads it back.
    """

    kind: str
    label: str
    scenario: str
    via: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ROLE_KINDS or any(v not in ROLE_KINDS[1:] for v in self.via):
            raise ValueError(f"role kinds are {ROLE_KINDS}, got {self.kind!r} via {self.via}")

    @property
    def is_strategy(self) -> bool:
        """The strategy's own Job (scored and compared), not a dependency."""
        return self.kind == "strategy"

    def of(self, kind: str) -> Role:
        """The role of a ``kind`` Job this role's Job depends on."""
        via = () if self.is_strategy else (*self.via, self.kind)
        return Role(kind, self.label, self.scenario, via)

    def __str__(self) -> str:
        where = f"{self.label} @ {self.scenario}"
        if self.is_strategy:
            return f"strategy {where}"
        return " of ".join((self.kind, *reversed(self.via), where))

    @classmethod
    def parse(cls, text: str) -> Role:
        """The inverse of ``str``; ``ValueError`` for anything else."""
        head, sep, scenario = text.rpartition(" @ ")
        words = head.split(" of ") if sep else []
        if len(words) == 1 and words[0].startswith("strategy "):
            return cls("strategy", words[0].removeprefix("strategy "), scenario)
        if len(words) >= 2 and words[0] != "strategy":
            return cls(words[0], words[-1], scenario, tuple(reversed(words[1:-1])))
        raise ValueError(f"not a role: {text!r}")


@dataclass
class Job:
    """One node of the plan.

    Attributes:
        id: content hash (see module docstring).
        component: plugin name of the strategy, teacher or generator trained.
        n: training-set size.
        seed: training seed (also selects the (N, seed) training subset).
        modalities: what it trains with and the subsets it is scored on.
        hparams: resolved hyper-parameters, or ``{"tuned": budget}`` while its study has not
            finished (such a Job is refused by execution; ``kdbench tune`` resolves it).
        depends_on: role -> id of the Job it needs (``teacher``, ``generator``).
        roles: how the protocol uses it (:class:`Role`), e.g. ``strategy kd @ t1ce`` or
            ``teacher of kd @ t1ce``.
        spec: the exact content that was hashed into ``id``.
    """

    id: str
    component: str
    n: int
    seed: int
    modalities: ModalityUse
    hparams: dict[str, Any]
    depends_on: dict[str, str]
    spec: dict[str, Any]
    roles: list[Role] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """The kinds of its roles, e.g. ``strategy+teacher`` for a shared ``multi``."""
        return "+".join(sorted({r.kind for r in self.roles}, key=ROLE_KINDS.index))

    def has_role(self, role: Role) -> bool:
        """Whether the protocol uses it as ``role``."""
        return role in self.roles

    @property
    def strategy_roles(self) -> list[Role]:
        """Its roles as a strategy's own Job (scored and compared)."""
        return [r for r in self.roles if r.is_strategy]

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``kdbench plan --json``."""
        return {
            "id": self.id,
            "kind": self.kind,
            "component": self.component,
            "n": self.n,
            "seed": self.seed,
            "modalities": self.modalities.to_json(),
            "hparams": self.hparams,
            "depends_on": dict(sorted(self.depends_on.items())),
            "roles": [str(r) for r in self.roles],
            "spec": self.spec,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        """The inverse of :meth:`to_json` (``kind`` is derived from the roles)."""
        return cls(
            id=data["id"], component=data["component"], n=int(data["n"]),
            seed=int(data["seed"]), modalities=ModalityUse.from_json(data["modalities"]),
            hparams=dict(data["hparams"]), depends_on=dict(data["depends_on"]),
            spec=dict(data["spec"]), roles=[Role.parse(r) for r in data.get("roles", [])])

    @property
    def tuned_study(self) -> str | None:
        """The Optuna study whose best trial gave its hyper-parameters (``None``: not tuned)."""
        tuned = self.spec.get("tuned")
        return tuned.get("study") if isinstance(tuned, dict) else None

    @property
    def pending_tuning(self) -> bool:
        """A ``tuned`` Job whose study has not given its values yet."""
        return "tuned" in self.hparams


@dataclass
class Plan:
    """All Jobs of a protocol, dependencies before dependents, in a deterministic order."""

    protocol: Any  # kdbench.protocol.Protocol
    jobs: list[Job]

    def job(self, job_id: str) -> Job:
        """The Job with ``job_id``."""
        return next(j for j in self.jobs if j.id == job_id)

    def spec(self, job_id: str) -> JobSpec:
        """What executing Job ``job_id`` needs: the Job, every Job it depends on (transitively,
        in plan order) and the protocol."""
        needed: set[str] = set()

        def add(jid: str) -> None:
            for dep in self.job(jid).depends_on.values():
                if dep not in needed:
                    needed.add(dep)
                    add(dep)

        add(job_id)
        return JobSpec(self.job(job_id), tuple(j for j in self.jobs if j.id in needed),
                       self.protocol)

    def waves(self) -> list[list[Job]]:
        """Jobs grouped so that each wave depends only on earlier waves (for job arrays)."""
        level: dict[str, int] = {}
        for job in self.jobs:
            level[job.id] = 1 + max((level[d] for d in job.depends_on.values()), default=-1)
        out: list[list[Job]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for job in self.jobs:
            out[level[job.id]].append(job)
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``kdbench plan --json``."""
        return {
            "protocol": {"name": self.protocol.name, "version": self.protocol.version},
            "jobs": [j.to_json() for j in self.jobs],
            "waves": [[j.id for j in wave] for wave in self.waves()],
        }


@dataclass
class EpochReport:
    """What callbacks receive after an epoch (every ``validate_every`` epochs).

    Attributes:
        epoch: 0-based epoch just finished.
        learning_rate: the epoch's learning rate.
        train_terms: mean of each named loss term over the epoch's batches.
        val_loss: nnU-Net's validation loss.
        val_dice: pseudo-Dice per region on the validation subset (WT, TC, ET).
        mean_val_dice: their mean (nnU-Net's ``mean_fg_dice``).
    """

    epoch: int
    learning_rate: float
    train_terms: dict[str, float]
    val_loss: float
    val_dice: list[float]
    mean_val_dice: float


@dataclass(frozen=True)
class Budget:
    """The training budget (a protocol's ``training`` section)."""

    epochs: int
    iterations_per_epoch: int
    val_iterations: int = 50
    validate_every: int = 1
    checkpoint_every: int = 1
    initial_lr: float | None = None  # None: the backbone's (nnU-Net: 1e-2)


@dataclass(frozen=True)
class JobSpec:
    """The one thing that crosses from planning into execution: a resolved Job with every Job
    it depends on and the validated protocol it was planned from (its data, split, seeds,
    training budget and metrics). Executors ship it as ``job.json``
    (``kdbench job run --spec job.json``), so running a Job reads no protocol file and builds no
    plan.

    Attributes:
        job: the Job to run.
        dependencies: the Jobs it depends on, transitively, each before its dependents.
        protocol: the validated :class:`kdbench.protocol.Protocol`.
    """

    job: Job
    dependencies: tuple[Job, ...]
    protocol: Any

    def plan(self) -> Plan:
        """The sub-plan of the Job and its dependencies."""
        return Plan(self.protocol, [*self.dependencies, self.job])

    def to_json(self) -> dict[str, Any]:
        """The ``job.json`` document (``kdbench.engine.spec.read_spec`` reads it back)."""
        return {
            "kdbench_job_spec": JOB_SPEC_VERSION,
            "job": self.job.to_json(),
            "dependencies": [j.to_json() for j in self.dependencies],
            "protocol": self.protocol.model_dump(mode="json"),
        }


#: Version of the ``job.json`` document's layout.
JOB_SPEC_VERSION = 1

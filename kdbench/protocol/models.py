"""The protocol schema: pydantic models of a versioned YAML protocol.

A protocol fixes everything a benchmark compares under: the data and its split, the training
sizes N and seeds, the scenarios (modalities at training and at inference), the strategies and
their hyper-parameters or tuning budget, the backbone and training budget, the metrics and the
statistics. ``docs/protocols.md`` documents every field; ``protocols/`` holds examples.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kdbench.modalities import MODALITIES, all_combinations, label, normalize

#: The protocol schema version this kdbench reads (the ``kdbench_protocol`` key).
SCHEMA_VERSION = 1

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _safe_name(value: str) -> str:
    if not _SAFE_NAME.match(value):
        raise ValueError(
            "must start with a letter or digit and hold only letters, digits, '_', '.', '-' "
            f"(it names files), got {value!r}"
        )
    return value


class Strict(BaseModel):
    """A model that refuses unknown keys and is immutable after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(Strict):
    """Where the cases come from."""

    source: str = Field(description="Dataset plugin name, e.g. 'phantom' or 'brats'.")
    name: str | None = Field(
        None, description="Name of the prepared dataset under the data folder (default: the "
        "release folder's name, or the synthetic source and a hash of its options)."
    )
    path: str | None = Field(None, description="Folder of the release (datasets read from disk).")
    options: dict[str, Any] = Field(default_factory=dict, description="Options of the plugin.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _safe_name(value)


class SplitSpec(Strict):
    """The held-out test set and the validation share inside each training subset."""

    test_size: int | None = Field(None, ge=1, description="Number of test cases.")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="Or a fraction of cases.")
    seed: int = Field(0, description="Seed of the test-set draw (fixed for the whole protocol).")
    validation_fraction: float = Field(
        0.2, gt=0, lt=0.5, description="Share of each (N, seed) subset held for validation."
    )
    stratify: bool = Field(True, description="Stratify the test draw by grade/source if known.")

    def test_count(self, total: int) -> int:
        """Test-set size for a dataset of ``total`` cases (a fraction rounds, at least 1)."""
        if self.test_size is not None:
            return self.test_size
        return max(1, round(self.test_fraction * total))

    @model_validator(mode="after")
    def _one_test_size(self) -> SplitSpec:
        if (self.test_size is None) == (self.test_fraction is None):
            raise ValueError("give exactly one of test_size and test_fraction")
        return self


class ScenarioSpec(Strict):
    """Modalities present in training data, and those available at inference."""

    name: str
    training: tuple[str, ...] = Field(MODALITIES, description="Modalities in the training data.")
    available: tuple[str, ...] | Literal["all"] = Field(
        description="Modalities available at inference, or 'all' for every non-empty subset "
        "of the training modalities (15 for four)."
    )

    _name = field_validator("name")(_safe_name)

    @field_validator("training", mode="before")
    @classmethod
    def _training(cls, value: Any) -> tuple[str, ...]:
        return normalize(_as_list(value))

    @field_validator("available", mode="before")
    @classmethod
    def _available(cls, value: Any) -> Any:
        if value == "all":
            return value
        return normalize(_as_list(value))

    @model_validator(mode="after")
    def _available_in_training(self) -> ScenarioSpec:
        if self.available != "all":
            extra = [m for m in self.available if m not in self.training]
            if extra:
                raise ValueError(
                    f"available modalities {extra} are not among the training modalities "
                    f"{list(self.training)}"
                )
        return self

    def subsets(self) -> list[tuple[str, ...]]:
        """The modality subsets available at inference, in table order."""
        if self.available == "all":
            return all_combinations(self.training)
        return [self.available]

    def describe(self) -> str:
        """``t1ce (training on t1+t1ce+t2+flair)``."""
        shown = "all subsets" if self.available == "all" else label(self.available)
        return f"{shown} (training on {label(self.training)})"


class TeacherSpec(Strict):
    """The teacher design of a distillation strategy: which teacher, trained on how many cases.

    ``teacher: multi`` is short for ``teacher: {strategy: multi}``. With ``n: same`` (the
    default) the teacher is trained on the student's own (N, seed) subset; with ``n: 64`` it is
    trained once per seed on the first 64 pool cases of that seed's permutation (never a test
    case) and shared by every N of the seed: the fixed-N-teacher control. ``strategy: mono``
    (a teacher on the student's own modalities) is the born-again control.
    """

    strategy: str | None = Field(
        None, description="Teacher plugin (default: the strategy's, e.g. 'multi' for kd); "
        "'mono' is a teacher on the student's own modalities (born-again control)."
    )
    n: int | Literal["same"] = Field(
        "same", description="Training cases of the teacher: 'same' (the student's N) or a "
        "fixed N_T, one teacher per seed shared by every N."
    )

    @field_validator("n")
    @classmethod
    def _n(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 2:
            raise ValueError("a teacher needs at least 2 cases (one training and one "
                             f"validation case), got {value}")
        return value


class StrategySpec(Strict):
    """One strategy to run, with its hyper-parameters (or ``tuned``) and dependencies."""

    name: str = Field(description="Strategy plugin name.")
    label: str | None = Field(
        None, description="Unique label in this protocol (default: the name); needed when one "
        "strategy runs twice with different settings."
    )
    hparams: dict[str, Any] | Literal["tuned"] = Field(
        default_factory=dict, description="Overrides of the declared defaults, or 'tuned'."
    )
    teacher: TeacherSpec | None = Field(
        None, description="Teacher design: a plugin name, or {strategy, n} (default: the "
        "strategy's teacher on the same (N, seed))."
    )
    teacher_hparams: dict[str, Any] = Field(default_factory=dict)
    generator: str | None = Field(None, description="Generator plugin (default: the strategy's).")
    generator_hparams: dict[str, Any] = Field(default_factory=dict)

    @field_validator("hparams", mode="before")
    @classmethod
    def _hparams(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, str) and value != "tuned":
            raise ValueError(f"must be a mapping of overrides or the word 'tuned', got {value!r}")
        return value

    @field_validator("label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        return None if value is None else _safe_name(value)

    @field_validator("teacher", mode="before")
    @classmethod
    def _teacher(cls, value: Any) -> Any:
        return {"strategy": value} if isinstance(value, str) else value

    @property
    def teacher_name(self) -> str | None:
        """The teacher plugin named (``None``: the strategy's default)."""
        return None if self.teacher is None else self.teacher.strategy

    def dependency(self, role: str) -> str | None:
        """The plugin named for ``role`` (``teacher`` or ``generator``; ``None``: the
        strategy's default)."""
        return self.teacher_name if role == "teacher" else self.generator

    @property
    def teacher_n(self) -> int | None:
        """The teacher's fixed training size, or ``None`` for the student's own N."""
        n = None if self.teacher is None else self.teacher.n
        return n if isinstance(n, int) else None

    @property
    def key(self) -> str:
        """The label, or the name when no label is given."""
        return self.label or self.name


class BackboneSpec(Strict):
    """The network family every strategy runs on, and its options."""

    name: str = "nnunet"
    options: dict[str, Any] = Field(default_factory=dict)


class TrainingSpec(Strict):
    """The training budget and its checkpoints; the same for every strategy."""

    epochs: int = Field(ge=1)
    iterations_per_epoch: int = Field(ge=1)
    val_iterations: int = Field(50, ge=1, description="Validation batches per validation "
                                "(nnU-Net's default: 50).")
    validate_every: int = Field(1, ge=1, description="Validation Dice every k epochs.")
    checkpoint_every: int = Field(1, ge=1, description="Checkpoint every k epochs.")


class TuningSpec(Strict):
    """One tuning budget, the same for every strategy whose hyper-parameters are ``tuned``."""

    trials: int = Field(ge=1)
    n: int | None = Field(None, ge=1, description="Training size to tune at (default: each N).")
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["hyperband", "median", "none"] = "hyperband"
    seed: int = 0


class PrimarySpec(Strict):
    """The pre-registered primary endpoint: one strategy against the baseline on one
    (scenario, subset, region, metric), tested across N as a fixed sequence from the smallest N
    up; every other comparison is secondary (Holm per family) and labelled exploratory."""

    strategy: str = Field(description="Strategy label whose gain over the baseline is claimed.")
    scenario: str = Field(description="Scenario name.")
    subset: str | None = Field(
        None, description="Available subset, e.g. 't1ce' (default: the scenario's only one)."
    )
    region: Literal["WT", "TC", "ET"] = "WT"
    metric: str = "dice"

    @field_validator("subset", mode="before")
    @classmethod
    def _subset(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split("+")
        return value if value is None else label(normalize(_as_list(value)))


class ContrastSpec(Strict):
    """A pre-registered contrast of a strategy against its control (e.g. ``kd`` against
    ``kd`` with a ``mono`` teacher: the privileged-modality effect), tested like the gains over
    the baseline: seeds as the replicates, per (scenario, subset, N, region, metric)."""

    name: str = Field(description="What the contrast measures, e.g. 'privileged'.")
    strategy: str = Field(description="Strategy label (the effect's side).")
    control: str = Field(description="Strategy label of its control.")

    _name = field_validator("name")(_safe_name)


class StatisticsSpec(Strict):
    """The comparison the report makes, pre-registered."""

    baseline: str | None = Field(None, description="Strategy label to compare against.")
    test: Literal["wilcoxon", "ttest"] = Field(
        "wilcoxon", description="The per-case test (secondary: conditional on the trained "
        "models).")
    correction: Literal["holm", "bonferroni", "fdr_bh", "none"] = "holm"
    alpha: float = Field(0.05, gt=0, lt=1)
    bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples for CIs.")
    margin: dict[str, float] = Field(
        default_factory=dict,
        description="Equivalence margin δ per metric, in its units (e.g. {dice: 0.02, hd95: "
        "2.0}): a gain within ±δ is 'faded', above δ a 'benefit'; N*_δ is computed for the "
        "metrics given.",
    )
    primary: PrimarySpec | None = Field(
        None, description="The primary endpoint (default: none, every comparison exploratory)."
    )
    contrasts: tuple[ContrastSpec, ...] = Field(
        (), description="Strategy − control contrasts (controls of distillation: born-again "
        "teacher, label smoothing, fixed-N teacher), each with run-level CIs per N."
    )

    @field_validator("contrasts")
    @classmethod
    def _contrasts(cls, value: tuple[ContrastSpec, ...]) -> tuple[ContrastSpec, ...]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"contrast names must be unique; repeated: {dupes}")
        same = [c.name for c in value if c.strategy == c.control]
        if same:
            raise ValueError(f"a contrast compares two strategies; {same} name one twice")
        return value

    @field_validator("margin")
    @classmethod
    def _margin(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not v > 0}
        if bad:
            raise ValueError(f"a margin must be positive, got {bad}")
        return value


class Protocol(Strict):
    """A whole benchmark protocol (the root of a protocol YAML file)."""

    kdbench_protocol: Literal[1] = Field(description="Schema version of this file.")
    name: str
    version: str = Field(description="Version of this protocol; enters every Job id.")
    description: str = ""
    dataset: DatasetSpec
    split: SplitSpec
    training_sizes: tuple[int, ...] = Field(min_length=1)
    seeds: tuple[int, ...] = Field(min_length=1)
    seeds_per_n: dict[int, int] = Field(
        default_factory=dict,
        description="Fewer seeds at some N: N -> how many of `seeds` (the first k) run there, "
        "e.g. {128: 3} (large N vary less between runs and cost more); default: every seed at "
        "every N.",
    )
    scenarios: tuple[ScenarioSpec, ...] = Field(min_length=1)
    strategies: tuple[StrategySpec, ...] = Field(min_length=1)
    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    training: TrainingSpec
    tuning: TuningSpec | None = None
    metrics: tuple[str, ...] | None = Field(
        None, description="Metric plugin names (default: every registered metric)."
    )
    statistics: StatisticsSpec = Field(default_factory=StatisticsSpec)
    executors: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Options of executor plugins by name (e.g. `slurm: {partition: gpu}`); "
        "a cluster profile file (`kdbench run --profile`) overrides them. Never part of a Job id.",
    )

    _name = field_validator("name")(_safe_name)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("training_sizes", "seeds")
    @classmethod
    def _unique(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        dupes = sorted({v for v in value if value.count(v) > 1})
        if dupes:
            raise ValueError(f"values listed twice: {dupes}")
        return value

    @field_validator("training_sizes")
    @classmethod
    def _positive_sorted(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(n < 2 for n in value):
            raise ValueError("every N must be at least 2 (one training and one validation case)")
        return tuple(sorted(value))

    def seeds_at(self, n: int) -> tuple[int, ...]:
        """The seeds that run at training size ``n``: the first ``seeds_per_n[n]`` of
        ``seeds`` (all of them when N is not listed)."""
        return self.seeds[:self.seeds_per_n.get(n, len(self.seeds))]

    @model_validator(mode="after")
    def _seeds_per_n(self) -> Protocol:
        for n, k in self.seeds_per_n.items():
            if n not in self.training_sizes:
                raise ValueError(f"seeds_per_n: N={n} is not one of the training sizes "
                                 f"{list(self.training_sizes)}")
            if not 1 <= k <= len(self.seeds):
                raise ValueError(f"seeds_per_n: N={n} runs the first k of the {len(self.seeds)} "
                                 f"seeds; k must be 1 to {len(self.seeds)}, got {k}")
        return self

    @property
    def subset_sizes(self) -> tuple[int, ...]:
        """Every (N, seed) subset size the plan trains on: the training sizes and the fixed
        training sizes of teachers (``teacher.n``), sorted."""
        fixed = {s.teacher_n for s in self.strategies if s.teacher_n is not None}
        return tuple(sorted(set(self.training_sizes) | fixed))

    @model_validator(mode="after")
    def _unique_labels(self) -> Protocol:
        for what, keys in (
            ("strategy label", [s.key for s in self.strategies]),
            ("scenario name", [s.name for s in self.scenarios]),
        ):
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            if dupes:
                raise ValueError(f"{what}s must be unique; repeated: {dupes} (add `label:`)")
        return self


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    from kdbench.protocol.errors import shown

    raise ValueError(f"expected a modality name or a list of them, got {shown(value)}")

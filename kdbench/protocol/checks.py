"""Checks of a schema-valid protocol against the loaded plugins and the dataset's size."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from kdbench.modalities import label
from kdbench.protocol.errors import describe_errors, located
from kdbench.protocol.models import Protocol, StrategySpec
from kdbench.protocol.yaml_source import Loc, YamlSource

if TYPE_CHECKING:
    from kdbench.registry import CategoryRegistry, Registry


class _Problems(list):
    def __init__(self, source: YamlSource | None) -> None:
        super().__init__()
        self.source = source

    def add(self, loc: Loc, text: str) -> None:
        self.append(located(loc, text, self.source))


def _options(
    problems: _Problems, cls: Any, options: dict[str, Any], loc: Loc
) -> BaseModel | None:
    try:
        return cls.validate_options(options)
    except ValidationError as exc:
        problems.extend(describe_errors(exc, cls.Options, problems.source, prefix=loc))
        return None


def _plugin(problems: _Problems, reg: CategoryRegistry, name: str, loc: Loc) -> Any | None:
    if name in reg:
        return reg.get(name)
    problems.add(loc, reg.unknown_message(name))
    return None


def _hparams(problems: _Problems, cls: Any, values: dict[str, Any], loc: Loc) -> None:
    try:
        cls.resolve_hparams(values)
    except ValidationError as exc:
        problems.extend(describe_errors(exc, cls.Params, problems.source, prefix=loc))


def check_against_registry(
    protocol: Protocol, registry: Registry, source: YamlSource | None = None
) -> list[str]:
    """Every problem of ``protocol`` that only the plugins can tell (empty when it is valid).

    Checked: plugin names exist (datasets, backbones, strategies, teachers, generators,
    metrics), their options and hyper-parameters, dependencies a strategy does not take,
    ``tuned`` without a tuning budget or a search space, a tuning N outside the training
    sizes, executor names and options, the statistics baseline, and sizes against the dataset:
    the test set must leave a training pool, and every N (and the tuning N) must fit in it.
    """
    problems = _Problems(source)
    sizes = _check_dataset(problems, protocol, registry)
    pool = None if sizes is None else unlabelled_pool(protocol, *sizes)

    backbone = _plugin(problems, registry.backbones, protocol.backbone.name, ("backbone", "name"))
    if backbone is not None:
        _options(problems, backbone, protocol.backbone.options, ("backbone", "options"))

    for i, spec in enumerate(protocol.strategies):
        _check_strategy(problems, protocol, registry, i, spec, pool)

    for i, metric in enumerate(protocol.metrics or ()):
        _plugin(problems, registry.metrics, metric, ("metrics", i))

    tuning = protocol.tuning
    if tuning is not None and tuning.n is not None and tuning.n not in protocol.training_sizes:
        problems.add(
            ("tuning", "n"),
            f"tuning N={tuning.n} is not one of the training sizes {list(protocol.training_sizes)}"
            "; list it there (its teacher and generator Jobs must be in the plan)",
        )

    for name, options in protocol.executors.items():
        cls = _plugin(problems, registry.executors, name, ("executors", name))
        if cls is not None:
            _options(problems, cls, options, ("executors", name))

    labels = [s.key for s in protocol.strategies]
    baseline = protocol.statistics.baseline
    if baseline is not None and baseline not in labels:
        problems.add(
            ("statistics", "baseline"),
            f"baseline {baseline!r} is not a strategy of this protocol (labels: {labels})",
        )
    _check_statistics(problems, protocol, registry, labels)
    return list(problems)


def _check_statistics(problems: _Problems, protocol: Protocol, registry: Registry,
                      labels: list[str]) -> None:
    """The margins name metrics; the primary endpoint names a strategy, scenario and subset of
    the protocol, and needs a baseline."""
    stats = protocol.statistics
    metrics = list(protocol.metrics or registry.metrics.names())
    for metric in stats.margin:
        if metrics and metric not in metrics:
            problems.add(("statistics", "margin", metric),
                         f"no metric {metric!r} in this protocol (metrics: {sorted(metrics)})")
    for i, contrast in enumerate(stats.contrasts):
        for side in ("strategy", "control"):
            if getattr(contrast, side) not in labels:
                problems.add(("statistics", "contrasts", i, side),
                             f"{getattr(contrast, side)!r} is not a strategy of this protocol "
                             f"(labels: {labels})")
    primary = stats.primary
    if primary is None:
        return
    if stats.baseline is None:
        problems.add(("statistics", "primary"), "a primary endpoint compares against the "
                     "baseline: set statistics.baseline")
    if primary.strategy not in labels or primary.strategy == stats.baseline:
        problems.add(("statistics", "primary", "strategy"),
                     f"{primary.strategy!r} is not a strategy of this protocol other than the "
                     f"baseline (labels: {labels})")
    if metrics and primary.metric not in metrics:
        problems.add(("statistics", "primary", "metric"),
                     f"no metric {primary.metric!r} in this protocol (metrics: {sorted(metrics)})")
    scenario = next((s for s in protocol.scenarios if s.name == primary.scenario), None)
    if scenario is None:
        problems.add(("statistics", "primary", "scenario"),
                     f"no scenario {primary.scenario!r} (scenarios: "
                     f"{[s.name for s in protocol.scenarios]})")
        return
    subsets = [label(s) for s in scenario.subsets()]
    if primary.subset is None and len(subsets) > 1:
        problems.add(("statistics", "primary", "subset"),
                     f"scenario {scenario.name!r} scores {len(subsets)} subsets: name the "
                     f"primary one (e.g. subset: {subsets[0]})")
    elif primary.subset is not None and primary.subset not in subsets:
        problems.add(("statistics", "primary", "subset"),
                     f"subset {primary.subset!r} is not scored in scenario {scenario.name!r} "
                     f"(subsets: {subsets})")


def unlabelled_pool(protocol: Protocol, total: int, n_test: int) -> tuple[int, str]:
    """Cases outside the test set and the largest subset of a seed, and how they add up."""
    largest = max(protocol.subset_sizes)
    return (total - n_test - largest,
            f"{total} cases - {n_test} test - {largest} in the largest subset")


def strategy_setting_problems(protocol: Protocol, registry: Registry,
                              pool: tuple[int, str] | None = None,
                              source: YamlSource | None = None) -> list[str]:
    """What each strategy's :meth:`~kdbench.Strategy.check_settings` finds, given its
    dependencies and the unlabelled ``pool`` (cases, arithmetic) once the dataset's size is
    known (the data preparation calls it again with the prepared cases)."""
    problems = _Problems(source)
    for i, spec in enumerate(protocol.strategies):
        _check_settings(problems, registry, ("strategies", i), spec, pool)
    return list(problems)


def _check_settings(problems: _Problems, registry: Registry, loc: Loc, spec: StrategySpec,
                    pool: tuple[int, str] | None) -> None:
    from kdbench.components.strategy import SettingsContext

    if spec.hparams == "tuned" or spec.name not in registry.strategies:
        return
    cls = registry.strategies.get(spec.name)
    try:
        hparams = cls.resolve_hparams(spec.hparams)
        dependencies = {}
        for role, category in (("teacher", "teachers"), ("generator", "generators")):
            if role in cls.requires:
                name = spec.dependency(role) or getattr(cls, f"default_{role}")
                dep = registry.categories[category].get(name)
                dependencies[role] = (dep, dep.resolve_hparams(getattr(spec, f"{role}_hparams")))
    except (ValidationError, KeyError, LookupError):
        return  # reported by the checks of each part
    context = SettingsContext(dependencies, *(pool or (None, "")))
    for key, text in cls.check_settings(hparams, context):
        problems.add((*loc, *key), text)


def _check_strategy(problems: _Problems, protocol: Protocol, registry: Registry, i: int,
                    spec: StrategySpec, pool: tuple[int, str] | None) -> None:
    """The problems of ``strategies[i]``: its name, hyper-parameters (or ``tuned``), the
    teacher and generator it takes, scenarios with nothing for its generator to do, and
    settings that cannot work together (:meth:`~kdbench.Strategy.check_settings`)."""
    loc: Loc = ("strategies", i)
    cls = _plugin(problems, registry.strategies, spec.name, (*loc, "name"))
    if cls is None:
        return
    if spec.hparams == "tuned":
        if protocol.tuning is None:
            problems.add(
                (*loc, "hparams"),
                "'tuned' needs a `tuning:` section (trials, ...) in the protocol",
            )
        if not any(h.tunable for h in cls.hparams.values()):
            problems.add(
                (*loc, "hparams"),
                f"strategy {spec.name!r} declares no search space (no hyper-parameter "
                "with a range or choices); give its hparams instead of 'tuned'",
            )
    else:
        _hparams(problems, cls, spec.hparams, (*loc, "hparams"))
    for role, category in (("teacher", "teachers"), ("generator", "generators")):
        present = getattr(spec, role) is not None  # a teacher design may name no plugin
        extra = getattr(spec, f"{role}_hparams")
        if role not in cls.requires:
            if present or extra:
                problems.add(
                    (*loc, role if present else f"{role}_hparams"),
                    f"strategy {spec.name!r} takes no {role}; remove this key",
                )
            return
        name = spec.dependency(role) or getattr(cls, f"default_{role}")
        dep = _plugin(problems, registry.categories[category], name, (*loc, role))
        if dep is not None:
            _hparams(problems, dep, extra, (*loc, f"{role}_hparams"))
    _check_settings(problems, registry, loc, spec, pool)
    if "generator" in cls.requires:
        for j, scenario in enumerate(protocol.scenarios):
            if any(set(s) >= set(scenario.training) for s in scenario.subsets()):
                problems.add(
                    ("scenarios", j, "available"),
                    f"strategy {spec.name!r} synthesises missing modalities, but scenario "
                    f"{scenario.name!r} makes every training modality available (nothing "
                    "to synthesise); give it a subset of the training modalities, or use "
                    "this strategy in another scenario",
                )


def _check_dataset(problems: _Problems, protocol: Protocol, registry: Registry
                   ) -> tuple[int, int] | None:
    """Problems of the dataset and of sizes against it; its (cases, test cases) when known."""
    spec = protocol.dataset
    cls = _plugin(problems, registry.datasets, spec.source, ("dataset", "source"))
    if cls is None:
        return None
    if cls.synthetic and spec.path is not None:
        problems.add(
            ("dataset", "path"),
            f"dataset {spec.source!r} generates its cases; remove `path`",
        )
    if not cls.synthetic and spec.path is None:
        problems.add(("dataset",), f"dataset {spec.source!r} reads a folder; give `path`")
    options = _options(problems, cls, spec.options, ("dataset", "options"))
    total = cls.case_count(options) if options is not None else None
    if total is None:
        return None
    split = protocol.split
    n_test = split.test_count(total)
    if n_test >= total:
        problems.add(
            ("split", "test_size" if split.test_size is not None else "test_fraction"),
            f"a test set of {n_test} cases leaves no training case (the dataset has {total}); "
            "make it smaller",
        )
        return None
    pool = total - n_test
    before = len(problems)
    for i, n in enumerate(protocol.training_sizes):
        if n > pool:
            problems.add(
                ("training_sizes", i),
                f"N={n} is larger than the training pool of {pool} cases "
                f"({total} in the dataset minus {n_test} for testing); lower N or add cases",
            )
    for i, spec in enumerate(protocol.strategies):
        if spec.teacher_n is not None and spec.teacher_n > pool:
            problems.add(
                ("strategies", i, "teacher", "n"),
                f"a teacher of N={spec.teacher_n} is larger than the training pool of {pool} "
                f"cases ({total} in the dataset minus {n_test} for testing); lower teacher.n",
            )
    if protocol.tuning is not None and protocol.tuning.n is not None and protocol.tuning.n > pool:
        problems.add(
            ("tuning", "n"),
            f"tuning N={protocol.tuning.n} is larger than the training pool of {pool} cases",
        )
    return (total, n_test) if len(problems) == before else None

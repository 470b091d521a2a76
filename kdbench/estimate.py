"""GPU-hour estimates of a plan: per Job, in total, and against the naive grid.

A Job's cost is its training, its validation and its test-set inference::

    epochs x iterations_per_epoch x step           (the strategy's kind of step)
  + epochs x val_iterations x validation step      (nnU-Net validates every epoch)
  + evaluated subsets x test cases x (prediction + scoring per case)
  (+ test cases x prediction for a generator's synthesis)

with ``epochs`` from the strategy's own budget (a model assembled from trained parts trains
0 epochs) and the step of its kind, from a **calibration**: milliseconds per step of the
nnU-Net network measured on one device (``benchmarks/step_benchmark.py``) and seconds per
test case. The kinds of step, and what the input pipeline (``augmentation: nnunet`` or ``gpu``)
and compilation make of an iteration, are :mod:`kdbench.cost_model`; the figures returned
(:class:`~kdbench.estimate_result.JobCost`, :class:`~kdbench.estimate_result.StudyCost`,
:class:`~kdbench.estimate_result.Estimate`) are :mod:`kdbench.estimate_result`.

Tuning (``kdbench tune``): per study, ``trials`` trainings of its template Job (training and
validation only) times the expected fraction of a full training that a trial runs under the
protocol's pruner (:func:`kdbench.tuning.pruning.pruned_fraction`, simulated).

The **naive grid** trains every (strategy, scenario, N, seed) cell on its own: each cell trains
its own teacher and generator (recursively) and nothing is shared between cells, tuning
trials run in full (no pruning), and every training runs as nnU-Net's own trainer does on a
GPU: its CPU augmentation with ``data_workers`` workers, compiled (nnU-Net's default on CUDA)
when the calibration has compiled figures. kdbench's figure is the plan's: each distinct Job
once, with the protocol's augmentation and the run's ``compile``.

The calibration (its file, the reference, measuring one) is :mod:`kdbench.calibration`; the
pruner simulation :mod:`kdbench.tuning.pruning`. This module imports no heavy library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdbench.calibration import Calibration
from kdbench.cost_model import (
    AUGMENTATIONS,
    Pipeline,
    input_assumption,
    iteration_ms,
    model_step_ms,
    naive_pipeline,
    protocol_augmentation,
    segmenter_step_ms,
    teacher_step_ms,
)
from kdbench.errors import KdbenchError
from kdbench.estimate_result import Estimate, JobCost, StudyCost
from kdbench.tuning.pruning import pruned_fraction

if TYPE_CHECKING:
    from kdbench.registry import Registry
    from kdbench.types import Job, Plan


def _component(job: Job, registry: Registry) -> type:
    for category in ("strategies", "teachers", "generators"):
        reg = registry.categories[category]
        if job.component in reg:
            return reg.get(job.component)
    raise KdbenchError(f"Job {job.id}: no plugin provides {job.component!r}")


def count_test_cases(plan: Plan) -> int:
    """The protocol's test-set size (``test_size``, or ``test_fraction`` of the dataset's
    ``cases`` option, else of a pool the size of the largest N)."""
    split = plan.protocol.split
    if split.test_size:
        return split.test_size
    fraction = split.test_fraction or 0.0
    cases = plan.protocol.dataset.options.get("cases")
    if isinstance(cases, int) and cases > 0:
        return max(1, round(cases * fraction))
    pool = max(plan.protocol.subset_sizes) / (1 - split.validation_fraction)
    return max(1, round(pool * fraction / (1 - fraction)))


def job_cost(job: Job, plan: Plan, registry: Registry, calibration: Calibration,
             n_test: int | None = None, *, inference: bool = True,
             pipeline: Pipeline | None = None) -> JobCost:
    """One Job's training, validation and (``inference``) test-set cost, trained with
    ``pipeline`` (default: the protocol's augmentation, eager)."""
    from kdbench.components.generator import Generator
    from kdbench.types import Budget

    cls = _component(job, registry)
    hparams = cls.resolve_hparams({}) if "tuned" in job.hparams else dict(job.hparams)
    strategy = cls(hparams, job.modalities)
    training = plan.protocol.training
    budget = strategy.training_budget(Budget(
        training.epochs, training.iterations_per_epoch, training.val_iterations,
        training.validate_every, training.checkpoint_every))
    pipeline = pipeline or Pipeline(protocol_augmentation(plan))
    segmenter = segmenter_step_ms(calibration, len(strategy.input_modalities()),
                                  float(getattr(cls, "relative_step_cost", 1.0)))
    draws = max(1, int(hparams.get("mc_samples", 1) or 1))
    teacher = teacher_step_ms(calibration, getattr(cls, "requires", ()), draws)
    ms = model_step_ms(segmenter, teacher, calibration, pipeline.compile)
    per_iteration = iteration_ms(ms, calibration, pipeline)
    epochs = int(budget.epochs)
    train_h = epochs * budget.iterations_per_epoch * per_iteration / 3.6e6
    validation_h = epochs * budget.val_iterations * calibration.step_ms["validation"] / 3.6e6
    inference_h = 0.0
    if inference:
        n_test = count_test_cases(plan) if n_test is None else n_test
        per_case = calibration.case_s["predict"] + calibration.case_s["score"]
        inference_h = len(job.modalities.evaluate) * n_test * per_case / 3600
        if isinstance(strategy, Generator):
            inference_h += n_test * calibration.case_s["predict"] / 3600  # its synthesis
    return JobCost(job.id, job.component, job.kind, epochs, ms, per_iteration, train_h,
                   validation_h, inference_h)


def _naive_grid(plan: Plan, costs: dict[str, JobCost],
                naive_costs: dict[str, JobCost]) -> tuple[float, int, float]:
    """The naive grid's Job hours and trainings (each strategy cell with its own
    dependencies, at ``naive_costs``), and the same hours at the plan's ``costs``."""

    def with_dependencies(job: Job, table: dict[str, JobCost]) -> tuple[float, int]:
        hours, trainings = table[job.id].total_h, 1
        for dep_id in job.depends_on.values():
            dep_h, dep_n = with_dependencies(plan.job(dep_id), table)
            hours, trainings = hours + dep_h, trainings + dep_n
        return hours, trainings

    naive_h = naive_same_h = 0.0
    naive_n = 0
    for job in plan.jobs:
        cells = len(job.strategy_roles)
        if cells:
            hours, trainings = with_dependencies(job, naive_costs)
            naive_h += cells * hours
            naive_n += cells * trainings
            naive_same_h += cells * with_dependencies(job, costs)[0]
    return naive_h, naive_n, naive_same_h


def _tuning_studies(plan: Plan, registry: Registry, calibration: Calibration,
                    pipeline: Pipeline, naive: Pipeline) -> tuple[list[StudyCost], float, float]:
    """The protocol's tuning studies (pruned, with ``pipeline``), the naive grid's tuning hours
    (in full, with ``naive``), and the last study's expected fraction (1 without studies)."""
    studies: list[StudyCost] = []
    naive_studies_h = 0.0
    tuning = plan.protocol.tuning
    fraction = 1.0
    if tuning is None:
        return studies, naive_studies_h, fraction
    from kdbench.tuning.studies import study_targets

    for target in study_targets(plan, registry):
        fraction = pruned_fraction(tuning.pruner, plan.protocol.training.epochs,
                                   plan.protocol.training.validate_every, tuning.trials,
                                   target.name)
        trial = job_cost(target.template, plan, registry, calibration, inference=False,
                         pipeline=pipeline)
        studies.append(StudyCost(target.name, tuning.trials, trial.total_h, fraction))
        naive_studies_h += tuning.trials * job_cost(
            target.template, plan, registry, calibration, inference=False,
            pipeline=naive).total_h
    return studies, naive_studies_h, fraction


def _assumptions(plan: Plan, calibration: Calibration, pipeline: Pipeline, naive: Pipeline,
                 n_test: int, fraction: float) -> list[str]:
    """The estimate's assumptions, in words (``kdbench plan --estimate`` lists them)."""
    tuning = plan.protocol.tuning
    assumptions = [
        f"kdbench: {pipeline.describe()}; naive grid: nnU-Net's own trainer "
        f"({naive.describe()})",
        "one Job at a time on one GPU",
        input_assumption(calibration),
        "a segmenter's step scales linearly from the 1-channel student step to the 4-channel "
        "train step with the channels it reads",
        "with a teacher: + (KD step - student step) per Monte Carlo draw; with a generator: "
        "+ one teacher-sized forward per draw",
        "nnU-Net validates every epoch: epochs x val_iterations x validation step",
        f"{n_test} test cases predicted and scored per evaluated subset of each Job",
        "naive grid: every (strategy, scenario, N, seed) cell trains its own teacher and "
        "generator (each costing what its Job costs here) and shares nothing; tuning trials "
        "run in full",
    ]
    if tuning is not None:
        assumptions.append(
            f"tuning: {tuning.trials} trials per study, training and validation only; pruner "
            f"{tuning.pruner}: a trial runs {fraction:.0%} of a full training on average "
            "(simulated: trials one after another, each of a fixed random quality)")
    if calibration.reference:
        assumptions.append("calibration: the shipped REFERENCE figures, not measured here")
    return assumptions


def estimate(plan: Plan, registry: Registry, calibration: Calibration, *,
             compile: bool = False, augmentation: str | None = None) -> Estimate:
    """The GPU-hours of ``plan`` (see the module docstring) and of its naive grid.

    Args:
        compile: the Jobs run with ``torch.compile`` (``kdbench run --compile``).
        augmentation: ``nnunet`` or ``gpu``: estimate as if the protocol's backbone chose it
            (default: what it chooses).
    """
    if augmentation is not None and augmentation not in AUGMENTATIONS:
        raise KdbenchError(f"augmentation {augmentation!r}: use one of "
                           f"{', '.join(AUGMENTATIONS)}")
    pipeline = Pipeline(augmentation or protocol_augmentation(plan), compile)
    naive = naive_pipeline(calibration)
    n_test = count_test_cases(plan)

    def costs_with(chosen: Pipeline) -> dict[str, JobCost]:
        return {job.id: job_cost(job, plan, registry, calibration, n_test, pipeline=chosen)
                for job in plan.jobs}

    costs = costs_with(pipeline)
    naive_h, naive_n, naive_same_h = _naive_grid(plan, costs, costs_with(naive))
    studies, naive_studies_h, fraction = _tuning_studies(plan, registry, calibration,
                                                         pipeline, naive)
    tuning = plan.protocol.tuning
    assumptions = _assumptions(plan, calibration, pipeline, naive, n_test, fraction)
    return Estimate(calibration, [costs[j.id] for j in plan.jobs], studies, naive_h, naive_n,
                    n_test, tuning.pruner if tuning else None, assumptions, pipeline, naive,
                    naive_studies_h, naive_same_h)

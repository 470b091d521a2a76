"""GPU-hour estimates of a plan: per Job, in total, and against the naive grid.

A Job's cost is its training, its validation and its test-set inference::

    epochs x iterations_per_epoch x step           (the strategy's kind of step)
  + epochs x val_iterations x validation step      (nnU-Net validates every epoch)
  + evaluated subsets x test cases x (prediction + scoring per case)
  (+ test cases x prediction for a generator's synthesis)

with ``epochs`` from the strategy's own budget (a model assembled from trained parts trains
0 epochs) and the step of its kind, from a **calibration**: milliseconds per step of the
nnU-Net network measured on one device (``benchmarks/step_benchmark.py``) and seconds per
test case. Kinds of step:

- a segmenter reading ``c`` of the 4 modalities: the student (1 channel) step plus
  ``(c - 1) / 3`` of the difference to the 4-channel train step;
- with a teacher: plus the measured KD overhead (KD step - student step), once per Monte Carlo
  draw (``mc_samples`` when the strategy has it);
- with a generator: plus one teacher-sized forward per draw;
- times ``relative_step_cost`` when a strategy class declares it (default 1).

**Input pipeline and compilation.** A training iteration is the model's step fed by the data
pipeline. When the calibration has an ``input`` section (CPU seconds of nnU-Net's augmentation
per batch on one core, GPU milliseconds of kdbench's batched augmentation per batch, and the
data workers per GPU), an iteration costs:

- nnU-Net's CPU augmentation (``augmentation: nnunet``, the default):
  ``max(step, cpu_augment_s / data_workers)`` -- the GPU waits for the loader when the workers
  cannot keep up (on BraTS they cannot: 1.4-4.0 s per batch and core);
- kdbench's GPU augmentation (``augmentation: gpu``): ``step + gpu_augment_ms`` (the workers only
  load and crop; assumed to keep up, which ``benchmarks/e2e_benchmark.py`` measures, P3).

With ``compile`` the step figures are the calibration's compiled ones (``train_compiled``,
``kd_compiled``; the 1-channel student and the teacher forward scaled like the train step).
Without an ``input`` section the data pipeline is assumed to keep up.

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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kdbench.calibration import Calibration
from kdbench.errors import KdbenchError
from kdbench.tuning.pruning import pruned_fraction

if TYPE_CHECKING:
    from kdbench.plan import Job, Plan
    from kdbench.registry import Registry

#: Augmentation settings the cost model knows (a backbone's ``augmentation`` option).
AUGMENTATIONS = ("nnunet", "gpu")
#: Modalities a 4-channel network reads (the student step is measured with 1).
CHANNELS = 4


# -- the cost model ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Pipeline:
    """How a training runs: its augmentation (``nnunet``: nnU-Net's CPU pipeline; ``gpu``:
    kdbench's batched GPU pipeline) and whether the networks are compiled."""

    augmentation: str = "nnunet"
    compile: bool = False

    def describe(self) -> str:
        where = "GPU" if self.augmentation == "gpu" else "nnU-Net's CPU"
        return f"{where} augmentation, {'compiled' if self.compile else 'eager'}"


def protocol_augmentation(plan: Plan) -> str:
    """The backbone's ``augmentation`` option (nnU-Net's CPU pipeline when not set)."""
    return str(plan.protocol.backbone.options.get("augmentation") or "nnunet")


def naive_pipeline(calibration: Calibration) -> Pipeline:
    """nnU-Net's own trainer on a GPU: CPU augmentation, compiled by default when the
    calibration says what compiling costs."""
    return Pipeline("nnunet", calibration.compiled)


def model_step_ms(segmenter_ms: float, teacher_ms: float, calibration: Calibration,
                  compile: bool) -> float:
    """A step's model time: a segmenter's part and a teacher's part (eager figures), scaled
    to the compiled figures when ``compile`` (the segmenter like the train step, the teacher
    like the KD step's extra over the student)."""
    step = calibration.step_ms
    if not compile:
        return segmenter_ms + teacher_ms
    if not calibration.compiled:
        raise KdbenchError("the calibration has no compiled step figures (step_ms."
                           "train_compiled, step_ms.kd_compiled): estimate without --compile, "
                           "or measure them (benchmarks/step_benchmark.py --compile)")
    scale = step["train_compiled"] / step["train"] if step["train"] else 1.0
    extra = step["kd"] - step["student"]
    extra_compiled = step["kd_compiled"] - step["student"] * scale
    teacher_scale = extra_compiled / extra if extra > 0 else scale
    return segmenter_ms * scale + teacher_ms * teacher_scale


def iteration_ms(model_ms: float, calibration: Calibration, pipeline: Pipeline) -> float:
    """One training iteration: the model's step fed by the data pipeline (module docstring)."""
    feed = calibration.input
    if not feed:
        return model_ms
    if pipeline.augmentation == "gpu":
        return model_ms + feed["gpu_augment_ms"]
    return max(model_ms, 1e3 * feed["cpu_augment_s"] / feed["data_workers"])


@dataclass
class JobCost:
    """One Job's estimate (hours on one GPU)."""

    job_id: str
    component: str
    kind: str
    epochs: int
    step_ms: float
    iteration_ms: float
    train_h: float
    validation_h: float
    inference_h: float

    @property
    def total_h(self) -> float:
        """Training, validation and inference."""
        return self.train_h + self.validation_h + self.inference_h

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job_id, "component": self.component, "kind": self.kind,
                "epochs": self.epochs, "step_ms": self.step_ms,
                "iteration_ms": self.iteration_ms, "train_h": self.train_h,
                "validation_h": self.validation_h, "inference_h": self.inference_h,
                "total_h": self.total_h}


@dataclass
class StudyCost:
    """One tuning study's estimate."""

    name: str
    trials: int
    trial_h: float
    fraction: float

    @property
    def pruned_h(self) -> float:
        return self.trials * self.trial_h * self.fraction

    @property
    def full_h(self) -> float:
        return self.trials * self.trial_h

    def to_json(self) -> dict[str, Any]:
        return {"study": self.name, "trials": self.trials, "trial_h": self.trial_h,
                "expected_fraction": self.fraction, "pruned_h": self.pruned_h,
                "full_h": self.full_h}


@dataclass
class Estimate:
    """The plan's estimate and the naive grid's."""

    calibration: Calibration
    jobs: list[JobCost]
    studies: list[StudyCost]
    naive_jobs_h: float
    naive_trainings: int
    test_cases: int
    pruner: str | None
    assumptions: list[str]
    pipeline: Pipeline = field(default_factory=Pipeline)
    naive: Pipeline = field(default_factory=Pipeline)
    naive_studies_h: float = 0.0
    naive_jobs_same_pipeline_h: float = 0.0

    @property
    def jobs_h(self) -> float:
        return sum(j.total_h for j in self.jobs)

    @property
    def tuning_h(self) -> float:
        return sum(s.pruned_h for s in self.studies)

    @property
    def total_h(self) -> float:
        """kdbench: each Job once, tuning pruned."""
        return self.jobs_h + self.tuning_h

    @property
    def naive_h(self) -> float:
        """The naive grid: each cell with its own teacher/generator, tuning not pruned."""
        return self.naive_jobs_h + self.naive_studies_h

    @property
    def ratio(self) -> float:
        """kdbench / naive (the grid benchmark's P4; goal <= 0.4)."""
        return self.total_h / self.naive_h if self.naive_h else float("nan")

    @property
    def pruning_saved_h(self) -> float:
        """Hours pruning saves (with this estimate's pipeline)."""
        return sum(s.full_h - s.pruned_h for s in self.studies)

    @property
    def sharing_saved_h(self) -> float:
        """Hours sharing teachers and generators saves: the naive grid's trainings run with
        this estimate's pipeline, minus the plan's Jobs."""
        return self.naive_jobs_same_pipeline_h - self.jobs_h

    @property
    def pipeline_saved_h(self) -> float:
        """Hours the pipeline (augmentation, compilation) saves against nnU-Net's own."""
        return self.naive_h - self.total_h - self.sharing_saved_h - self.pruning_saved_h

    def job(self, job_id: str) -> JobCost:
        return next(j for j in self.jobs if j.job_id == job_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "calibration": {**self.calibration.to_json(),
                            "path": str(self.calibration.path) if self.calibration.path
                            else None},
            "test_cases": self.test_cases,
            "pipeline": {"augmentation": self.pipeline.augmentation,
                         "compile": self.pipeline.compile},
            "jobs": [j.to_json() for j in self.jobs],
            "tuning": {"pruner": self.pruner, "studies": [s.to_json() for s in self.studies]},
            "total_gpu_hours": self.total_h,
            "jobs_gpu_hours": self.jobs_h,
            "tuning_gpu_hours": self.tuning_h,
            "naive": {"gpu_hours": self.naive_h, "trainings": self.naive_trainings,
                      "jobs_gpu_hours": self.naive_jobs_h,
                      "tuning_gpu_hours": self.naive_studies_h,
                      "pipeline": {"augmentation": self.naive.augmentation,
                                   "compile": self.naive.compile}},
            "saved": {"sharing_gpu_hours": self.sharing_saved_h,
                      "pruning_gpu_hours": self.pruning_saved_h,
                      "pipeline_gpu_hours": self.pipeline_saved_h},
            "ratio_kdbench_over_naive": self.ratio,
            "assumptions": self.assumptions,
        }


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
    pool = max(plan.protocol.training_sizes) / (1 - split.validation_fraction)
    return max(1, round(pool * fraction / (1 - fraction)))


def job_cost(job: Job, plan: Plan, registry: Registry, calibration: Calibration,
             n_test: int | None = None, *, inference: bool = True,
             pipeline: Pipeline | None = None) -> JobCost:
    """One Job's training, validation and (``inference``) test-set cost, trained with
    ``pipeline`` (default: the protocol's augmentation, eager)."""
    from kdbench.components.generator import Generator
    from kdbench.engine.requests import Budget

    cls = _component(job, registry)
    hparams = cls.resolve_hparams({}) if "tuned" in job.hparams else dict(job.hparams)
    strategy = cls(hparams, job.modalities)
    training = plan.protocol.training
    budget = strategy.training_budget(Budget(
        training.epochs, training.iterations_per_epoch, training.val_iterations,
        training.validate_every, training.checkpoint_every))
    pipeline = pipeline or Pipeline(protocol_augmentation(plan))
    step = calibration.step_ms
    channels = len(strategy.input_modalities())
    segmenter = step["student"] + (step["train"] - step["student"]) * (channels - 1) / (
        CHANNELS - 1)
    segmenter *= float(getattr(cls, "relative_step_cost", 1.0))
    draws = max(1, int(hparams.get("mc_samples", 1) or 1))
    requires = getattr(cls, "requires", ())
    teacher = 0.0
    if "teacher" in requires:
        teacher += max(step["kd"] - step["student"], 0.0) * draws
    if "generator" in requires:
        teacher += step["teacher_forward"] * draws
    ms = model_step_ms(segmenter, teacher, calibration, pipeline.compile)
    per_iteration = iteration_ms(ms, calibration, pipeline)
    epochs = int(budget.epochs)
    train_h = epochs * budget.iterations_per_epoch * per_iteration / 3.6e6
    validation_h = epochs * budget.val_iterations * step["validation"] / 3.6e6
    inference_h = 0.0
    if inference:
        n_test = count_test_cases(plan) if n_test is None else n_test
        per_case = calibration.case_s["predict"] + calibration.case_s["score"]
        inference_h = len(job.modalities.evaluate) * n_test * per_case / 3600
        if isinstance(strategy, Generator):
            inference_h += n_test * calibration.case_s["predict"] / 3600  # its synthesis
    return JobCost(job.id, job.component, job.kind, epochs, ms, per_iteration, train_h,
                   validation_h, inference_h)


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
    naive_costs = costs_with(naive)

    def with_dependencies(job: Job, table: dict[str, JobCost]) -> tuple[float, int]:
        hours, trainings = table[job.id].total_h, 1
        for dep_id in job.depends_on.values():
            dep_h, dep_n = with_dependencies(plan.job(dep_id), table)
            hours, trainings = hours + dep_h, trainings + dep_n
        return hours, trainings

    naive_h = naive_same_h = 0.0
    naive_n = 0
    for job in plan.jobs:
        cells = sum(1 for role in job.roles if role.startswith("strategy "))
        if cells:
            hours, trainings = with_dependencies(job, naive_costs)
            naive_h += cells * hours
            naive_n += cells * trainings
            naive_same_h += cells * with_dependencies(job, costs)[0]
    studies: list[StudyCost] = []
    naive_studies_h = 0.0
    tuning = plan.protocol.tuning
    fraction = 1.0
    if tuning is not None:
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
    feed = calibration.input
    if feed:
        loader_ms = 1e3 * feed["cpu_augment_s"] / feed["data_workers"]
        input_assumption = (
            f"input: nnU-Net's CPU augmentation {feed['cpu_augment_s']:g} s per batch and "
            f"core over {feed['data_workers']:g} workers = one batch every {loader_ms:.1f} ms "
            f"(the GPU waits when its step is shorter); kdbench's GPU augmentation "
            f"+{feed['gpu_augment_ms']:g} ms per step, its workers only loading and cropping "
            "(assumed to keep up; P3 measures it)")
    else:
        input_assumption = "data loading keeps up with the GPU (no input stall)"
    assumptions = [
        f"kdbench: {pipeline.describe()}; naive grid: nnU-Net's own trainer "
        f"({naive.describe()})",
        "one Job at a time on one GPU",
        input_assumption,
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
    return Estimate(calibration, [costs[j.id] for j in plan.jobs], studies, naive_h, naive_n,
                    n_test, tuning.pruner if tuning else None, assumptions, pipeline, naive,
                    naive_studies_h, naive_same_h)


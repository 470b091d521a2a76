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
protocol's pruner (:func:`pruned_fraction`, simulated).

The **naive grid** trains every (strategy, scenario, N, seed) cell on its own: each cell trains
its own teacher and generator (recursively) and nothing is shared between cells, tuning
trials run in full (no pruning), and every training runs as nnU-Net's own trainer does on a
GPU: its CPU augmentation with ``data_workers`` workers, compiled (nnU-Net's default on CUDA)
when the calibration has compiled figures. kdbench's figure is the plan's: each distinct Job
once, with the protocol's augmentation and the run's ``compile``.

This module imports no heavy library; measuring a calibration (:func:`measure_calibration`)
runs the benchmarks of a checkout of kdbench's repository.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench.errors import KdbenchError

if TYPE_CHECKING:
    from kdbench.plan import Job, Plan
    from kdbench.registry import Registry

#: Schema version of calibration files.
CALIBRATION_VERSION = 1
#: The checkout's benchmarks folder (absent from an installed wheel).
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: The reference calibration shipped with the repository (H100 figures, not measured here).
REFERENCE_CALIBRATION = BENCHMARKS / "calibration" / "h100_reference.json"
#: Where ``--calibrate`` stores what it measured (``runs/`` is git-ignored).
CALIBRATION_DIR = Path("runs") / "calibration"
STEP_KEYS = ("train", "student", "kd", "teacher_forward", "validation")
#: Optional compiled step figures (``torch.compile``), used with ``compile``.
COMPILED_KEYS = ("train_compiled", "kd_compiled")
CASE_KEYS = ("predict", "score")
#: Optional input-pipeline figures (see the module docstring).
INPUT_KEYS = ("cpu_augment_s", "gpu_augment_ms", "data_workers")
#: Augmentation settings the cost model knows (a backbone's ``augmentation`` option).
AUGMENTATIONS = ("nnunet", "gpu")
#: Modalities a 4-channel network reads (the student step is measured with 1).
CHANNELS = 4


@dataclass(frozen=True)
class Calibration:
    """Measured (or reference) costs on one device.

    Attributes:
        device: the device's name.
        label: what the figures are, in words (a reference says so).
        reference: ``True`` for the shipped reference figures, not measured on this machine.
        step_ms: milliseconds per step: ``train`` (4-channel network), ``student`` (1 channel),
            ``kd`` (student + teacher), ``teacher_forward``, ``validation``; optionally
            ``train_compiled`` and ``kd_compiled`` (with ``torch.compile``).
        case_s: seconds per test case: ``predict`` (sliding window + export), ``score``.
        input: optional: ``cpu_augment_s`` (nnU-Net's augmentation of one batch on one CPU
            core), ``gpu_augment_ms`` (kdbench's GPU augmentation of one batch),
            ``data_workers`` (augmentation workers per GPU); empty: the loader keeps up.
        network: the network and batch measured (patch, batch, features, AMP, compile).
        date: when it was measured.
        sources: how each figure was obtained (measured, derived, assumed).
        path: the file it was read from.
    """

    device: str
    label: str
    reference: bool
    step_ms: dict[str, float]
    case_s: dict[str, float]
    input: dict[str, float] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    date: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def from_json(cls, data: Any, where: str) -> Calibration:
        """Check and read a calibration (``where`` names it in error messages)."""
        if not isinstance(data, dict) or data.get("kdbench_calibration") != CALIBRATION_VERSION:
            raise KdbenchError(f"{where}: not a kdbench calibration (expected the key "
                               f"kdbench_calibration: {CALIBRATION_VERSION}); write one with "
                               "`kdbench plan P --estimate --calibrate`")
        values = {}
        for section, keys in (("step_ms", STEP_KEYS), ("case_s", CASE_KEYS)):
            given = data.get(section)
            if not isinstance(given, dict):
                raise KdbenchError(f"{where}: field {section!r} is missing; it needs "
                                   f"{', '.join(keys)}")
            for key in keys:
                value = given.get(key)
                if isinstance(value, bool) or not isinstance(value, int | float) or \
                        not math.isfinite(value) or value < 0:
                    raise KdbenchError(f"{where}: field {section}.{key} must be a number >= 0, "
                                       f"got {value!r}")
            values[section] = {k: float(given[k]) for k in keys}
        values["step_ms"].update(_optional(data.get("step_ms"), "step_ms", COMPILED_KEYS, where))
        given_input = data.get("input")
        if given_input is not None and not isinstance(given_input, dict):
            raise KdbenchError(f"{where}: field 'input' must be a mapping of "
                               f"{', '.join(INPUT_KEYS)}")
        values["input"] = _optional(given_input, "input", INPUT_KEYS, where)
        if values["input"] and set(values["input"]) != set(INPUT_KEYS):
            missing = sorted(set(INPUT_KEYS) - set(values["input"]))
            raise KdbenchError(f"{where}: field 'input' needs all of {', '.join(INPUT_KEYS)}; "
                               f"missing {', '.join(missing)}")
        if values["input"] and values["input"]["data_workers"] < 1:
            raise KdbenchError(f"{where}: field input.data_workers must be >= 1")
        device = data.get("device")
        if not isinstance(device, str) or not device:
            raise KdbenchError(f"{where}: field 'device' must name the device measured")
        return cls(device=device, label=str(data.get("label") or device),
                   reference=bool(data.get("reference", False)), step_ms=values["step_ms"],
                   case_s=values["case_s"], input=values["input"],
                   network=dict(data.get("network") or {}),
                   date=data.get("date"), sources=dict(data.get("sources") or {}))

    def to_json(self) -> dict[str, Any]:
        """The file form (``path`` is where it was read from, not stored)."""
        return {"kdbench_calibration": CALIBRATION_VERSION, "reference": self.reference,
                "label": self.label, "device": self.device, "date": self.date,
                "network": self.network, "step_ms": self.step_ms, "case_s": self.case_s,
                **({"input": self.input} if self.input else {}), "sources": self.sources}

    @property
    def compiled(self) -> bool:
        """Whether it has compiled step figures."""
        return all(key in self.step_ms for key in COMPILED_KEYS)


def _optional(given: Any, section: str, keys: tuple[str, ...], where: str) -> dict[str, float]:
    """The optional numeric ``keys`` of ``given`` (each a finite number >= 0)."""
    out = {}
    for key in keys:
        value = (given or {}).get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value) or value < 0:
            raise KdbenchError(f"{where}: field {section}.{key} must be a number >= 0, "
                               f"got {value!r}")
        out[key] = float(value)
    return out


def load_calibration(path: Path | None = None) -> Calibration:
    """The calibration in ``path``, by default the shipped reference.

    Raises:
        KdbenchError: no such file, not JSON, or a missing or bad field (named).
    """
    path = Path(path) if path is not None else REFERENCE_CALIBRATION
    if not path.is_file():
        hint = ("the reference calibration ships with kdbench's repository "
                "(benchmarks/calibration/); give --calibration FILE or measure with --calibrate"
                if path == REFERENCE_CALIBRATION else "give an existing file or --calibrate")
        raise KdbenchError(f"calibration file {path} not found; {hint}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise KdbenchError(f"calibration file {path} is not JSON: {exc}") from exc
    calibration = Calibration.from_json(data, f"calibration file {path}")
    return Calibration(**{**calibration.__dict__, "path": path})


def calibration_path(device: str, folder: Path = CALIBRATION_DIR) -> Path:
    """``runs/calibration/<device>.json`` (the name made file-safe)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower() or "device"
    return Path(folder) / f"{slug}.json"


def save_calibration(calibration: Calibration, folder: Path = CALIBRATION_DIR) -> Path:
    """Write a measured calibration to :func:`calibration_path` (atomically); return it."""
    path = calibration_path(calibration.device, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(calibration.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return path


def measure_calibration(size: str = "brats", device: str | None = None, steps: int = 10,
                        warmup: int = 3) -> Calibration:
    """Measure a calibration on this machine with the checkout's ``benchmarks/calibrate.py``
    (the step benchmark's train, student, KD and teacher steps, and one case scored).

    Raises:
        KdbenchError: kdbench runs from an installed wheel without its benchmarks folder.
    """
    script = BENCHMARKS / "calibrate.py"
    if not script.is_file():
        raise KdbenchError(f"--calibrate runs {script}, which is not here (kdbench installed "
                           "without its repository); run it from a checkout, or give "
                           "--calibration FILE")
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("kdbench_calibrate", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = module.measure(size=size, device=device, steps=steps, warmup=warmup)
    return Calibration.from_json(data, f"the calibration measured by {script}")


# -- pruning ----------------------------------------------------------------------------------

def pruned_fraction(pruner: str, epochs: int, validate_every: int = 1, trials: int = 100,
                    study: str = "study", repeats: int = 200) -> float:
    """Expected share of a full training that one of ``trials`` tuning trials runs: the mean
    of :func:`trial_epochs` over ``repeats`` draws of the trials' qualities, over ``epochs``."""
    import random

    if pruner == "none" or epochs <= 1:
        return 1.0
    rng = random.Random(0)
    total = 0
    for _ in range(repeats):
        qualities = [rng.random() for _ in range(trials)]
        total += sum(trial_epochs(pruner, epochs, validate_every, qualities, study))
    return total / (repeats * trials * epochs)


def trial_epochs(pruner: str, epochs: int, validate_every: int, qualities: list[float],
                 study: str = "study", reduction_factor: int = 3) -> list[int]:
    """Epochs each trial trains under kdbench's ``pruner`` (``make_pruner``), the trials run
    one after another, trial ``i`` reporting ``qualities[i]`` at every validated epoch
    (0-based steps ``validate_every - 1``, ``2 * validate_every - 1``, ..., and the last).

    - ``none``: every trial runs in full.
    - ``hyperband``: Optuna's HyperbandPruner over epochs 1..``epochs`` (reduction factor 3):
      the trial's bracket from Optuna's own hash of ``study`` and the trial number; in the
      bracket of early-stopping rate ``s`` the rungs are at steps ``3**(s + k)``, checked at
      the next report, and a trial goes on when Optuna's successive-halving rule promotes it
      among its bracket's trials that reached the rung (the top third; while fewer than three
      did, the best so far).
    - ``median`` (once a trial has completed, from step 1): a trial below the median of the
      completed trials' values at its first checked report stops there.
    """
    import binascii

    if pruner not in ("hyperband", "median", "none"):
        raise KdbenchError(f"unknown pruner {pruner!r}; kdbench knows hyperband, median, none")
    if pruner == "none" or epochs <= 1:
        return [epochs] * len(qualities)

    def stopped_at(step: int) -> int:  # epochs trained when stopped at the check of ``step``
        return min(epochs, math.ceil((step + 1) / validate_every) * validate_every)

    out: list[int] = []
    if pruner == "median":
        import statistics

        complete: list[float] = []
        for q in qualities:
            pruned = bool(complete) and q < statistics.median(complete)
            out.append(stopped_at(1) if pruned else epochs)
            if not pruned:
                complete.append(q)
        return out
    eta = reduction_factor
    n_brackets = math.floor(math.log(epochs, eta) + 1e-9) + 1
    budgets = [math.ceil(n_brackets * eta ** (n_brackets - 1 - b) / (n_brackets - b))
               for b in range(n_brackets)]
    reached: dict[tuple[int, int], list[float]] = {}
    for number, q in enumerate(qualities):
        n = binascii.crc32(f"{study}_{number}".encode()) % sum(budgets)
        bracket = 0
        while n - budgets[bracket] >= 0:  # Optuna's HyperbandPruner._get_bracket_id
            n -= budgets[bracket]
            bracket += 1
        rung, trained = 0, epochs
        while eta ** (bracket + rung) <= epochs - 1:
            competing = reached.setdefault((bracket, rung), [])
            competing.append(q)
            index = max(len(competing) // eta - 1, 0)
            if q < sorted(competing)[-(index + 1)]:
                trained = stopped_at(eta ** (bracket + rung))
                break
            rung += 1
        out.append(trained)
    return out


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


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

Tuning (``kdbench tune``): per study, ``trials`` trainings of its template Job (training and
validation only) times the expected fraction of a full training that a trial runs under the
protocol's pruner (:func:`pruned_fraction`, simulated).

The **naive grid** trains every (strategy, scenario, N, seed) cell on its own: each cell trains
its own teacher and generator (recursively) and nothing is shared between cells, and tuning
trials run in full (no pruning). kdbench's figure is the plan's: each distinct Job once.

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
CASE_KEYS = ("predict", "score")
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
            ``kd`` (student + teacher), ``teacher_forward``, ``validation``.
        case_s: seconds per test case: ``predict`` (sliding window + export), ``score``.
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
        device = data.get("device")
        if not isinstance(device, str) or not device:
            raise KdbenchError(f"{where}: field 'device' must name the device measured")
        return cls(device=device, label=str(data.get("label") or device),
                   reference=bool(data.get("reference", False)), step_ms=values["step_ms"],
                   case_s=values["case_s"], network=dict(data.get("network") or {}),
                   date=data.get("date"), sources=dict(data.get("sources") or {}))

    def to_json(self) -> dict[str, Any]:
        """The file form (``path`` is where it was read from, not stored)."""
        return {"kdbench_calibration": CALIBRATION_VERSION, "reference": self.reference,
                "label": self.label, "device": self.device, "date": self.date,
                "network": self.network, "step_ms": self.step_ms, "case_s": self.case_s,
                "sources": self.sources}


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

@dataclass
class JobCost:
    """One Job's estimate (hours on one GPU)."""

    job_id: str
    component: str
    kind: str
    epochs: int
    step_ms: float
    train_h: float
    validation_h: float
    inference_h: float

    @property
    def total_h(self) -> float:
        """Training, validation and inference."""
        return self.train_h + self.validation_h + self.inference_h

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job_id, "component": self.component, "kind": self.kind,
                "epochs": self.epochs, "step_ms": self.step_ms, "train_h": self.train_h,
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
        return self.naive_jobs_h + sum(s.full_h for s in self.studies)

    @property
    def ratio(self) -> float:
        """kdbench / naive (the grid benchmark's P4; goal <= 0.4)."""
        return self.total_h / self.naive_h if self.naive_h else float("nan")

    def job(self, job_id: str) -> JobCost:
        return next(j for j in self.jobs if j.job_id == job_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "calibration": {**self.calibration.to_json(),
                            "path": str(self.calibration.path) if self.calibration.path
                            else None},
            "test_cases": self.test_cases,
            "jobs": [j.to_json() for j in self.jobs],
            "tuning": {"pruner": self.pruner, "studies": [s.to_json() for s in self.studies]},
            "total_gpu_hours": self.total_h,
            "jobs_gpu_hours": self.jobs_h,
            "tuning_gpu_hours": self.tuning_h,
            "naive": {"gpu_hours": self.naive_h, "trainings": self.naive_trainings,
                      "jobs_gpu_hours": self.naive_jobs_h,
                      "tuning_gpu_hours": sum(s.full_h for s in self.studies)},
            "saved": {"sharing_gpu_hours": self.naive_jobs_h - self.jobs_h,
                      "pruning_gpu_hours": sum(s.full_h - s.pruned_h for s in self.studies)},
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
             n_test: int | None = None, *, inference: bool = True) -> JobCost:
    """One Job's training, validation and (``inference``) test-set cost."""
    from kdbench.components.generator import Generator
    from kdbench.engine.requests import Budget

    cls = _component(job, registry)
    hparams = cls.resolve_hparams({}) if "tuned" in job.hparams else dict(job.hparams)
    strategy = cls(hparams, job.modalities)
    training = plan.protocol.training
    budget = strategy.training_budget(Budget(
        training.epochs, training.iterations_per_epoch, training.val_iterations,
        training.validate_every, training.checkpoint_every))
    step = calibration.step_ms
    channels = len(strategy.input_modalities())
    ms = step["student"] + (step["train"] - step["student"]) * (channels - 1) / (CHANNELS - 1)
    ms *= float(getattr(cls, "relative_step_cost", 1.0))
    draws = max(1, int(hparams.get("mc_samples", 1) or 1))
    requires = getattr(cls, "requires", ())
    if "teacher" in requires:
        ms += max(step["kd"] - step["student"], 0.0) * draws
    if "generator" in requires:
        ms += step["teacher_forward"] * draws
    epochs = int(budget.epochs)
    train_h = epochs * budget.iterations_per_epoch * ms / 3.6e6
    validation_h = epochs * budget.val_iterations * step["validation"] / 3.6e6
    inference_h = 0.0
    if inference:
        n_test = count_test_cases(plan) if n_test is None else n_test
        per_case = calibration.case_s["predict"] + calibration.case_s["score"]
        inference_h = len(job.modalities.evaluate) * n_test * per_case / 3600
        if isinstance(strategy, Generator):
            inference_h += n_test * calibration.case_s["predict"] / 3600  # its synthesis
    return JobCost(job.id, job.component, job.kind, epochs, ms, train_h, validation_h,
                   inference_h)


def estimate(plan: Plan, registry: Registry, calibration: Calibration) -> Estimate:
    """The GPU-hours of ``plan`` (see the module docstring) and of its naive grid."""
    n_test = count_test_cases(plan)
    costs = {job.id: job_cost(job, plan, registry, calibration, n_test) for job in plan.jobs}

    def with_dependencies(job: Job) -> tuple[float, int]:
        hours, trainings = costs[job.id].total_h, 1
        for dep_id in job.depends_on.values():
            dep_h, dep_n = with_dependencies(plan.job(dep_id))
            hours, trainings = hours + dep_h, trainings + dep_n
        return hours, trainings

    naive_h, naive_n = 0.0, 0
    for job in plan.jobs:
        cells = sum(1 for role in job.roles if role.startswith("strategy "))
        if cells:
            hours, trainings = with_dependencies(job)
            naive_h += cells * hours
            naive_n += cells * trainings
    studies: list[StudyCost] = []
    tuning = plan.protocol.tuning
    fraction = 1.0
    if tuning is not None:
        from kdbench.tuning.studies import study_targets

        for target in study_targets(plan, registry):
            fraction = pruned_fraction(tuning.pruner, plan.protocol.training.epochs,
                                       plan.protocol.training.validate_every, tuning.trials,
                                       target.name)
            trial = job_cost(target.template, plan, registry, calibration, inference=False)
            studies.append(StudyCost(target.name, tuning.trials, trial.total_h, fraction))
    assumptions = [
        "one Job at a time on one GPU; data loading keeps up with the GPU (no input stall)",
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
                    n_test, tuning.pruner if tuning else None, assumptions)


"""What an estimate returns: one Job's cost, one tuning study's, and the plan's against the
naive grid, with the hours each saving accounts for (their JSON is ``kdbench plan --estimate
--json``'s ``estimate``).

The estimate itself is :func:`kdbench.estimate.estimate`. This module imports no heavy library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kdbench.cost_model import Pipeline

if TYPE_CHECKING:
    from kdbench.calibration import Calibration


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

"""Running one Job of a plan: train -> predict the test cases -> write predictions.

A Job's folder is ``runs/<protocol>/<job id>/``. Training resumes from the checkpoint there;
``done.json`` is written last, atomically, so a Job is finished exactly when it exists. A
student finds its teacher by the teacher Job's id and loads that Job's final checkpoint.
Scoring the predictions and recording them in MLflow is the evaluation's work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.components.strategy import Strategy
from kdbench.data.protocol_data import ProtocolData
from kdbench.engine.requests import Budget, TrainedModel, TrainRequest
from kdbench.errors import KdbenchError
from kdbench.modalities import label
from kdbench.plan import Job, Plan
from kdbench.registry import Registry

DONE = "done.json"


@dataclass(frozen=True)
class JobResult:
    """A finished Job: its folder and what ``done.json`` says."""

    path: Path
    record: dict[str, Any]

    @property
    def checkpoint(self) -> Path:
        """The final checkpoint."""
        return self.path / self.record["checkpoint"]

    def predictions(self, subset: tuple[str, ...]) -> Path:
        """The folder of test predictions made from ``subset``."""
        return self.path / self.record["predictions"][label(subset)]


def job_dir(runs_dir: Path, plan: Plan, job: Job) -> Path:
    """``runs/<protocol>/<job id>``."""
    return Path(runs_dir) / plan.protocol.name / job.id


def finished(runs_dir: Path, plan: Plan, job: Job) -> JobResult | None:
    """The Job's result if it has finished, else ``None``."""
    folder = job_dir(runs_dir, plan, job)
    try:
        return JobResult(folder, json.loads((folder / DONE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def strategy_of(job: Job, registry: Registry) -> Strategy:
    """The strategy instance a Job trains (a teacher or generator class, too)."""
    for category in ("strategies", "teachers", "generators"):
        reg = registry.categories[category]
        if job.component in reg:
            cls = reg.get(job.component)
            break
    else:
        raise KdbenchError(f"Job {job.id}: no plugin provides {job.component!r}")
    if "tuned" in job.hparams:
        raise KdbenchError(
            f"Job {job.id} ({job.component}) uses tuned hyper-parameters; run `kdbench tune` "
            "first"
        )
    return cls(job.hparams, job.modalities)


def run_job(
    job: Job,
    plan: Plan,
    registry: Registry,
    data: ProtocolData,
    runs_dir: Path,
    *,
    device: str = "cpu",
    data_workers: int = 0,
    compile: bool = False,
    callbacks: list[Callable[[Any], None]] | None = None,
) -> JobResult:
    """Train a Job (or resume it), predict its test cases from each scored subset, mark it done.

    Raises:
        KdbenchError: a dependency has not finished, or the hyper-parameters are not tuned yet.
    """
    done = finished(runs_dir, plan, job)
    if done is not None:
        return done
    protocol = plan.protocol
    folder = job_dir(runs_dir, plan, job)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.json").write_text(json.dumps(job.to_json(), indent=2, sort_keys=True))
    teacher = None
    if "teacher" in job.depends_on:
        teacher_job = plan.job(job.depends_on["teacher"])
        teacher_done = finished(runs_dir, plan, teacher_job)
        if teacher_done is None:
            raise KdbenchError(
                f"Job {job.id} needs its teacher Job {teacher_job.id} ({teacher_job.component}, "
                f"N={teacher_job.n}, seed {teacher_job.seed}), which has not finished; run it first"
            )
        teacher = TrainedModel(strategy_of(teacher_job, registry), teacher_done.checkpoint)
    strategy = strategy_of(job, registry)
    backbone_cls = registry.backbones.get(protocol.backbone.name)
    backbone = backbone_cls()
    options = backbone_cls.validate_options(protocol.backbone.options)
    subset = data.splits.subset(job.n, job.seed)
    training = protocol.training
    result = backbone.train(TrainRequest(
        strategy=strategy,
        dataset=data.dataset,
        train_cases=subset.train,
        val_cases=subset.validation,
        budget=Budget(training.epochs, training.iterations_per_epoch, training.val_iterations,
                      training.validate_every, training.checkpoint_every),
        options=options,
        output_dir=folder,
        seed=job.seed,
        device=device,
        teacher=teacher,
        callbacks=list(callbacks or []),
        compile=compile,
        data_workers=data_workers,
    ))
    trained = TrainedModel(strategy, result.checkpoint)
    predictions = {}
    for available in job.modalities.evaluate:
        out = folder / "predictions" / label(available)
        backbone.predict(trained, data.dataset, options, data.splits.test, available, out,
                         device)
        predictions[label(available)] = os.path.relpath(out, folder)
    record = {
        "job": job.id,
        "checkpoint": os.path.relpath(result.checkpoint, folder),
        "epochs": result.epochs,
        "resumed_from_epoch": result.resumed_from_epoch,
        "predictions": predictions,
        "test_cases": list(data.splits.test),
        "splits": {"file": str(data.splits_path), "seed_hash": data.splits.seed_hash(job.seed)},
        "teacher": job.depends_on.get("teacher"),
    }
    tmp = folder / (DONE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, folder / DONE)
    return JobResult(folder, record)

"""Running one Job of a plan: train -> predict the test cases -> write predictions.

A Job's folder is ``runs/<protocol>/<job id>/``. Training resumes from the checkpoint there;
``done.json``, the record of its outputs (checkpoint, predictions, cases), is written last,
atomically, so the outputs are complete exactly when it exists. Whether a Job is *done* is its
MLflow run's word (:mod:`kdbench.engine.execute`): outputs without a complete run are scored
and recorded again, never trained again. A
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

from kdbench.components.generator import Generator
from kdbench.components.requests import (
    PredictRequest,
    SynthesisRequest,
    TrainedModel,
    TrainRequest,
)
from kdbench.components.strategy import Strategy
from kdbench.data.protocol_data import ProtocolData
from kdbench.engine.preflight import check_pretraining, pretraining_record
from kdbench.errors import KdbenchError
from kdbench.faults import fault_point
from kdbench.modalities import label
from kdbench.registry import Registry
from kdbench.types import Budget, Job, Plan

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

    @property
    def synthesis(self) -> Path | None:
        """A generator's per-case synthesis scores (``None`` for other Jobs)."""
        name = self.record.get("synthesis")
        return self.path / name if name else None

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


def trained_dependencies(job: Job, plan: Plan, registry: Registry, runs_dir: Path
                         ) -> dict[str, TrainedModel]:
    """The finished models a Job depends on, by role (``teacher``, ``generator``).

    Raises:
        KdbenchError: a dependency has not finished.
    """
    out = {}
    for role, dep_id in sorted(job.depends_on.items()):
        dep = plan.job(dep_id)
        done = finished(runs_dir, plan, dep)
        if done is None:
            raise KdbenchError(
                f"Job {job.id} needs its {role} Job {dep.id} ({dep.component}, N={dep.n}, "
                f"seed {dep.seed}), which has not finished; run it first"
            )
        out[role] = TrainedModel(strategy_of(dep, registry), done.checkpoint,
                                 trained_dependencies(dep, plan, registry, runs_dir))
    return out


def unlabelled_pool(plan: Plan, data: ProtocolData, seed: int) -> tuple[str, ...]:
    """Cases of ``seed``'s pool permutation after the largest training subset: outside the test
    set and every (N, seed) training and validation subset (a fixed-N teacher's included), the
    same for every N."""
    largest = max(job.n for job in plan.jobs)
    return tuple(data.splits.permutations[seed][largest:])


def _check_cases(job: Job, chosen: tuple[str, ...], allowed: tuple[str, ...], hook: str,
                 where: str) -> None:
    outside = sorted(set(chosen) - set(allowed))
    if outside:
        raise KdbenchError(f"Job {job.id} ({job.component}): {hook} chose cases outside "
                           f"{where}: {outside[:5]}; a strategy may only narrow them")


def train_model(
    job: Job,
    plan: Plan,
    registry: Registry,
    data: ProtocolData,
    runs_dir: Path,
    folder: Path,
    *,
    device: str = "cpu",
    data_workers: int = 0,
    compile: bool = False,
    callbacks: list[Callable[[Any], None]] | None = None,
) -> tuple[Any, Any, dict[str, TrainedModel], tuple[str, ...], tuple[str, ...]]:
    """Train a Job into ``folder`` (or resume it) on its (N, seed) subset, validating on that
    subset's validation cases: the part of a Job that a tuning trial runs too. A teacher whose
    pretraining cases include a test case is refused first
    (:func:`~kdbench.engine.preflight.check_pretraining`).

    Returns:
        The strategy, the backbone's train result, the trained dependencies, the training
        cases and the unlabelled cases.
    """
    protocol = plan.protocol
    dependencies = trained_dependencies(job, plan, registry, runs_dir)
    strategy = strategy_of(job, registry)
    check_pretraining([(job, strategy)], data)
    backbone_cls = registry.backbones.get(protocol.backbone.name)
    options = backbone_cls.validate_options(protocol.backbone.options)
    subset = data.splits.subset(job.n, job.seed)
    training = protocol.training
    train_cases = tuple(strategy.training_cases(subset.train))
    pool = unlabelled_pool(plan, data, job.seed)
    unlabelled = tuple(strategy.unlabelled_cases(pool))
    _check_cases(job, train_cases, subset.train, "training_cases", "its training subset")
    _check_cases(job, unlabelled, pool, "unlabelled_cases", "the unlabelled pool")
    result = backbone_cls().train(TrainRequest(
        strategy=strategy,
        dataset=data.dataset,
        train_cases=train_cases,
        val_cases=subset.validation,
        budget=strategy.training_budget(Budget(
            training.epochs, training.iterations_per_epoch, training.val_iterations,
            training.validate_every, training.checkpoint_every)),
        options=options,
        output_dir=folder,
        seed=job.seed,
        device=device,
        teacher=dependencies.get("teacher"),
        generator=dependencies.get("generator"),
        unlabelled_cases=unlabelled,
        callbacks=list(callbacks or []),
        compile=compile,
        data_workers=data_workers,
    ))
    return strategy, result, dependencies, train_cases, unlabelled


def train_and_predict(
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
    strategy, result, dependencies, train_cases, unlabelled = train_model(
        job, plan, registry, data, runs_dir, folder, device=device, data_workers=data_workers,
        compile=compile, callbacks=callbacks)
    backbone_cls = registry.backbones.get(protocol.backbone.name)
    backbone = backbone_cls()
    options = backbone_cls.validate_options(protocol.backbone.options)
    trained = TrainedModel(strategy, result.checkpoint, dependencies)
    predictions = _predict_subsets(backbone, trained, job, data, folder, options, device)
    synthesis = None
    if isinstance(strategy, Generator):
        synthesis = _write_synthesis(backbone, trained, strategy, data, folder, options, device)
    record = {
        "job": job.id,
        "synthesis": synthesis,
        "checkpoint": os.path.relpath(result.checkpoint, folder),
        "epochs": result.epochs,
        "resumed_from_epoch": result.resumed_from_epoch,
        "predictions": predictions,
        "test_cases": list(data.splits.test),
        "splits": {"file": str(data.splits_path), "seed_hash": data.splits.seed_hash(job.seed)},
        "teacher": job.depends_on.get("teacher"),
        "dependencies": dict(sorted(job.depends_on.items())),
        "train_cases": list(train_cases),
        "unlabelled_cases": list(unlabelled),
        "pretraining": _pretraining(strategy, job, plan, data, runs_dir),
    }
    tmp = folder / (DONE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, folder / DONE)
    return JobResult(folder, record)


def _pretraining(strategy: Strategy, job: Job, plan: Plan, data: ProtocolData, runs_dir: Path
                 ) -> dict[str, Any] | None:
    """The teacher's pretraining (``pretraining_record``): the Job's own when it is a teacher,
    else its teacher Job's record (``None`` without a teacher)."""
    own = pretraining_record(strategy, data.dataset)
    if own is not None or "teacher" not in job.depends_on:
        return own
    done = finished(runs_dir, plan, plan.job(job.depends_on["teacher"]))
    return done.record.get("pretraining") if done is not None else None


def _predict_subsets(backbone: Any, trained: TrainedModel, job: Job, data: ProtocolData,
                     folder: Path, options: Any, device: str) -> dict[str, str]:
    """Predict the test cases from each subset the Job is scored on; subset label -> the
    predictions folder, relative to the Job's folder."""
    predictions = {}
    for available in job.modalities.evaluate:
        out = folder / "predictions" / label(available)
        backbone.predict(PredictRequest(
            trained=trained, dataset=data.dataset, options=options,
            case_ids=tuple(data.splits.test), available=tuple(available), out_dir=out,
            device=device))
        predictions[label(available)] = os.path.relpath(out, folder)
        fault_point("predict", subset=label(available))  # predicted, done.json not yet written
    return predictions


def _write_synthesis(backbone: Any, trained: TrainedModel, generator: Generator,
                     data: ProtocolData, folder: Path, options: Any, device: str) -> str:
    """A generator Job's image-quality table of its test cases, written beside its record;
    the file's name."""
    from kdbench.metrics.synthesis import synthesis_table

    table = synthesis_table(
        backbone.synthesise(SynthesisRequest(
            trained=trained, dataset=data.dataset, options=options,
            case_ids=tuple(data.splits.test), device=device)),
        generator.missing)
    table.to_csv(folder / "synthesis.csv", index=False)
    return "synthesis.csv"

"""``kdbench tune``: run a protocol's Optuna studies with one trial budget for every strategy.

Each trial draws the strategy's declared search space (its ``Params`` ranges: no table here),
trains the study's template Job with those values on the (N, seed) training subset, reports
the validation pseudo-Dice of that subset after every validated epoch to the pruner, and
returns the last one. The test set is never read: trials train only (no prediction, no
scoring). Complete and pruned trials count towards ``tuning.trials``; failed ones do not.

The pieces: one worker's trial loop, alone on SQLite or several on a shared storage with an
exact budget (:mod:`kdbench.tuning.worker`); ``--workers K`` worker processes on this machine
(:mod:`kdbench.tuning.launch`); the record, an MLflow experiment ``kdbench/<protocol>/tuning``
with one parent run per study and one nested run per trial (parameters, per-epoch validation
curves, its Optuna state) (:mod:`kdbench.tuning.record`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from kdbench.engine.execute import ExecutionSettings
from kdbench.registry import Registry
from kdbench.tuning.launch import launch_workers
from kdbench.tuning.studies import GRACE, HEARTBEAT
from kdbench.tuning.summary import StudySummary
from kdbench.tuning.worker import Tuner

ENV_ARRAY_INDEX = "SLURM_ARRAY_TASK_ID"


def tune_protocol(settings: ExecutionSettings, registry: Registry, storage: str,
                  progress: Callable[[str], None] = lambda _: None, *, workers: int = 1,
                  worker_index: int | None = None, heartbeat: int = HEARTBEAT,
                  grace: int = GRACE) -> list[StudySummary]:
    """Run (or continue) every study of the protocol up to its trial budget.

    Args:
        workers: worker processes to start on this machine (``kdbench tune --worker-index``
            subprocesses, numbered ``worker_index * workers + j``); 1: tune in this process.
        worker_index: this worker's number among all workers of the studies (seeds its
            sampler; > 0 needs a shared storage); default ``$SLURM_ARRAY_TASK_ID``, else 0.
        heartbeat, grace: seconds between heartbeats of a running trial, and without one
            before it is failed and retried (shared storages only).

    Raises:
        KdbenchError: no ``tuned`` strategy in the protocol, bad input, SQLite storage for
            several workers, or a trial that failed (its study keeps every finished trial;
            rerun to continue).
    """
    if worker_index is None:
        worker_index = int(os.environ.get(ENV_ARRAY_INDEX) or 0)
    if workers > 1:
        return launch_workers(settings, registry, storage, progress, workers, worker_index,
                              heartbeat, grace)
    tuner = Tuner(settings, registry, storage, progress, worker_index=worker_index,
                  heartbeat=heartbeat, grace=grace)
    return [tuner.tune(target) for target in tuner.targets]

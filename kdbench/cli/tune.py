"""``kdbench tune``: the protocol's Optuna studies, one trial budget for every strategy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from kdbench.cli.common import console, state
from kdbench.cli.run import Compile, DataDir, Device, RunsDir, Storage, TrackingUri, Workers


def tune(
    ctx: typer.Context,
    protocol: Annotated[Path, typer.Argument(help="Protocol YAML file.")],
    show: Annotated[bool, typer.Option(
        "--show", help="Print each study's best parameters and history; tune nothing.")] = False,
    storage: Storage = None,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
    tracking_uri: TrackingUri = None,
    device: Device = "cpu",
    data_workers: Workers = 0,
    compile: Compile = False,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Tuning worker processes to start on this machine, sharing "
        "each study (needs a PostgreSQL or journal:/// --storage when more than 1).")] = 1,
    worker_index: Annotated[int | None, typer.Option(
        "--worker-index", min=0, envvar="SLURM_ARRAY_TASK_ID", show_default="0",
        help="This worker's number when workers are started one by one (on several nodes, "
        "a SLURM array) on one shared --storage; seeds its sampler.")] = None,
    heartbeat: Annotated[int, typer.Option(
        "--heartbeat", min=1, metavar="SECONDS",
        help="Shared storage: seconds between heartbeats of a running trial.")] = 60,
    grace: Annotated[int, typer.Option(
        "--grace", min=2, metavar="SECONDS",
        help="Shared storage: seconds without a heartbeat after which a running trial is "
        "failed and its parameters retried.")] = 120,
) -> None:
    """Tune every `hparams: tuned` strategy: one Optuna study per (strategy, scenario, tuning
    N), the same trial budget for each, pruned on validation Dice; rerun to continue. Several
    workers (--workers, or --worker-index on other nodes) share the studies of a PostgreSQL or
    journal storage; the budget stays exact."""
    from kdbench.cli.run import _settings
    from kdbench.protocol import load_protocol
    from kdbench.tuning.launch import LAUNCHED_ENV
    from kdbench.tuning.studies import default_storage, display_url
    from kdbench.tuning.summary import show as show_studies
    from kdbench.tuning.tune import tune_protocol

    settings = _settings(ctx, protocol, data_dir, runs_dir, tracking_uri, device, data_workers,
                         compile, storage)
    registry = state(ctx).registry()
    load_protocol(protocol, registry)  # a bad protocol stops before the default storage is made
    storage = storage or default_storage()
    if show:
        summaries = show_studies(settings, registry, storage)
    else:
        summaries = tune_protocol(settings, registry, storage,
                                  progress=lambda line: console.print(line), workers=workers,
                                  worker_index=worker_index, heartbeat=heartbeat, grace=grace)
    if os.environ.get(LAUNCHED_ENV):  # a worker of `--workers K`: its launcher prints them
        console.print(f"worker {worker_index}: done")
        return
    for summary in summaries:
        _print(summary)
    shown = display_url(storage)
    dashboard = storage[len("journal://"):] if storage.startswith("journal://") else shown
    console.print(f"Optuna storage: {shown}\n  open it with: optuna-dashboard {dashboard}")


def _print(summary) -> None:  # noqa: ANN001 - a StudySummary or None
    if summary is None:
        return
    target = summary.target
    surplus = f", {summary.surplus} surplus" if summary.surplus else ""
    console.print(f"[bold]{target.name}[/]: {summary.counted}/{summary.budget} trials "
                  f"({summary.complete} complete, {summary.pruned} pruned, {summary.failed} "
                  f"failed{surplus}); best validation Dice "
                  f"{'-' if summary.best_value is None else f'{summary.best_value:.4f}'}")
    for key, value in sorted(summary.best_params.items()):
        console.print(f"  best {key} = {value}")
    for trial in summary.history:
        value = "-" if trial["value"] is None else f"{trial['value']:.4f}"
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in sorted(trial["params"].items()))
        console.print(f"  trial {trial['number']:>3} {trial['state']:<8} {value:>7} "
                      f"({trial['epochs']} epochs) {params}")

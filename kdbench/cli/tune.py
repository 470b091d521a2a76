"""``kdbench tune``: the protocol's Optuna studies, one trial budget for every strategy."""

from __future__ import annotations

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
) -> None:
    """Tune every `hparams: tuned` strategy: one Optuna study per (strategy, scenario, tuning
    N), the same trial budget for each, pruned on validation Dice; rerun to continue."""
    from kdbench.cli.run import _settings
    from kdbench.tuning.studies import default_storage
    from kdbench.tuning.tune import show as show_studies
    from kdbench.tuning.tune import tune_protocol

    settings = _settings(ctx, protocol, data_dir, runs_dir, tracking_uri, device, data_workers,
                         compile, storage)
    storage = storage or default_storage()
    registry = state(ctx).registry()
    if show:
        summaries = show_studies(settings, registry, storage)
    else:
        summaries = tune_protocol(settings, registry, storage,
                                  progress=lambda line: console.print(line))
    for summary in summaries:
        _print(summary)
    console.print(f"Optuna storage: {storage}\n  open it with: optuna-dashboard {storage}")


def _print(summary) -> None:  # noqa: ANN001 - a StudySummary or None
    if summary is None:
        return
    target = summary.target
    console.print(f"[bold]{target.name}[/]: {summary.counted}/{summary.budget} trials "
                  f"({summary.complete} complete, {summary.pruned} pruned, {summary.failed} "
                  f"failed); best validation Dice "
                  f"{'-' if summary.best_value is None else f'{summary.best_value:.4f}'}")
    for key, value in sorted(summary.best_params.items()):
        console.print(f"  best {key} = {value}")
    for trial in summary.history:
        value = "-" if trial["value"] is None else f"{trial['value']:.4f}"
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in sorted(trial["params"].items()))
        console.print(f"  trial {trial['number']:>3} {trial['state']:<8} {value:>7} "
                      f"({trial['epochs']} epochs) {params}")

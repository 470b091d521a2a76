"""``kdbench run`` (a whole protocol) and ``kdbench job run`` (one Job, for executors)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdbench.cli.common import console, esc, state

app = typer.Typer(help="Run single Jobs (what executors call).", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="KDBENCH_DATA_DIR",
                                       help="Where prepared datasets live.")]
RunsDir = Annotated[Path, typer.Option("--runs-dir", envvar="KDBENCH_RUNS_DIR",
                                       help="Where Jobs keep checkpoints and predictions.")]
TrackingUri = Annotated[str | None, typer.Option(
    "--tracking-uri", envvar="KDBENCH_TRACKING_URI",
    help="MLflow tracking URI (default: sqlite file mlruns/mlflow.db).")]
Storage = Annotated[str | None, typer.Option(
    "--storage", envvar="KDBENCH_OPTUNA_STORAGE",
    help="Optuna storage URL of the tuning studies (default: sqlite file optuna/studies.db).")]
Device = Annotated[str, typer.Option(help="cpu or cuda.")]
Workers = Annotated[int, typer.Option("--data-workers", min=0,
                                      help="Augmentation worker processes (0: deterministic).")]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile models (CUDA).")]


def _settings(ctx: typer.Context, protocol: Path | None, data_dir: Path, runs_dir: Path,
              tracking_uri: str | None, device: str, data_workers: int, compile: bool,
              storage: str | None = None):
    from kdbench.engine.execute import ExecutionSettings

    return ExecutionSettings(protocol, data_dir, runs_dir, tracking_uri, device, data_workers,
                             compile, list(state(ctx).plugins_dirs), storage)


def run(
    ctx: typer.Context,
    protocol: Annotated[Path, typer.Argument(help="Protocol YAML file.")],
    executor: Annotated[str, typer.Option(help="Executor plugin: inline, local, ...")] = "inline",
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Run only this strategy (and what it needs); repeatable.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would run.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Parallel Jobs (local executor, "
                                      "without GPUs).")] = 1,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
    tracking_uri: TrackingUri = None,
    device: Device = "cpu",
    data_workers: Workers = 0,
    compile: Compile = False,
    storage: Storage = None,
    profile: Annotated[Path | None, typer.Option(
        "--profile", envvar="KDBENCH_PROFILE", help="Cluster profile file: executor options "
        "(`executors: {slurm: {partition: ...}}`), over the protocol's.")] = None,
) -> None:
    """Run a protocol end to end: prepare, train, predict, score and record every Job."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from kdbench.runner import run_protocol

    settings = _settings(ctx, protocol, data_dir, runs_dir, tracking_uri, device, data_workers,
                         compile, storage)
    registry = state(ctx).registry()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  disable=dry_run) as progress:
        report = run_protocol(settings, registry, executor=executor, only=only,
                              dry_run=dry_run, max_parallel=jobs, progress=progress,
                              profile=profile)
    verb = "would run" if dry_run else "submitted" if report.detached else "ran"
    console.print(f"{report.plan.protocol.name}: {len(report.skipped)} Jobs already complete, "
                  f"{verb} {len(report.todo)}")
    if dry_run:
        for job_id in report.todo:
            job = report.plan.job(job_id)
            console.print(f"  {job.id}  {job.component:<10} N={job.n:<5} seed {job.seed}")
        return
    if report.detached:
        console.print(f"follow them with: kdbench status {esc(protocol)}")
    _print_results(report)
    uri = report.tracking_uri
    how = (f"open {uri} in a browser" if uri.startswith(("http://", "https://"))
           else f"open it with: mlflow ui --backend-store-uri {uri}")
    console.print(f"MLflow record: experiment [bold]{report.experiment}[/] in {uri}\n  {how}")


def _print_results(report) -> None:  # noqa: ANN001 - a RunReport
    from kdbench.results import gain_table, mean_dice_table, seed_dice
    from kdbench.tracking import Tracker

    per_seed = seed_dice(Tracker(report.plan, report.tracking_uri))
    if per_seed.empty:
        return
    _print_table(mean_dice_table(per_seed), "seeds", "{:.3f}",
                 "Mean test Dice over seeds and test cases (complete runs)")
    baseline = report.plan.protocol.statistics.baseline
    if baseline:
        gains = gain_table(per_seed, baseline)
        if not gains.empty:
            _print_table(gains, "pairs", "{:+.3f}",
                         f"Gain over {baseline} in test Dice, paired by seed "
                         f"(mean of strategy − {baseline})")


def _print_table(table, count: str, fmt: str, title: str) -> None:  # noqa: ANN001 - a DataFrame
    import pandas as pd
    from rich.table import Table

    from kdbench.results import REGIONS

    view = Table(title=title)
    for column in ("scenario", "subset", "strategy", "N", count, *REGIONS):
        view.add_column(column, justify="left" if column in ("scenario", "subset", "strategy")
                        else "right")
    for row in table.itertuples(index=False):
        view.add_row(row.scenario, row.subset, row.strategy, str(row.N),
                     str(getattr(row, count)),
                     *("-" if pd.isna(getattr(row, r)) else fmt.format(getattr(row, r))
                       for r in REGIONS))
    console.print(view)


def status(
    ctx: typer.Context,
    protocol: Annotated[Path, typer.Argument(help="Protocol YAML file.")],
    runs_dir: RunsDir = Path("runs"),
    tracking_uri: TrackingUri = None,
    all_jobs: Annotated[bool, typer.Option(
        "--all", help="List every Job (default: the unfinished ones).")] = False,
) -> None:
    """Where every Job stands: done, running, pending, failed or todo, with the scheduler's
    id (SLURM) and log of each submitted one. Reads MLflow and the executors' records only."""
    from rich.table import Table

    from kdbench.status import counts, protocol_status

    settings = _settings(ctx, protocol, Path("data"), runs_dir, tracking_uri, "cpu", 0, False)
    plan, statuses = protocol_status(settings, state(ctx).registry())
    view = Table(title=f"{plan.protocol.name}: Jobs")
    for column in ("job", "component", "N", "seed", "state", "scheduler id",
                   "scheduler state", "log"):
        view.add_column(column)
    for s in statuses:
        if all_jobs or s.state != "done":
            view.add_row(s.job.id[:12], s.job.component, str(s.job.n), str(s.job.seed), s.state,
                         s.external_id or "-", s.scheduler_state or "-", s.log or "-")
    console.print(view)
    console.print(", ".join(f"{k}: {v}" for k, v in counts(statuses).items())
                  + f" (of {len(statuses)} Jobs)")


@app.command("run")
def job_run(
    ctx: typer.Context,
    protocol: Annotated[Path | None, typer.Argument(
        help="Protocol YAML file (with --job); not needed with --spec.")] = None,
    job: Annotated[str | None, typer.Option("--job", help="Job id (see `kdbench plan`).")] = None,
    spec: Annotated[Path | None, typer.Option(
        "--spec", help="A Job spec (job.json, written by `kdbench run` in the Job's folder): "
        "runs it without the protocol file.")] = None,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
    tracking_uri: TrackingUri = None,
    device: Device = "cpu",
    data_workers: Workers = 0,
    compile: Compile = False,
    storage: Storage = None,
) -> None:
    """Run one Job with its MLflow record (idempotent; resumes from its checkpoint): from its
    spec (--spec job.json), or from a protocol and a Job id (PROTOCOL --job ID)."""
    from kdbench.engine.execute import execute_job

    if (spec is None) == (protocol is None or job is None) or (spec and (protocol or job)):
        raise typer.BadParameter("give either --spec job.json, or PROTOCOL and --job ID",
                                 param_hint="--spec / PROTOCOL --job")
    settings = _settings(ctx, protocol, data_dir, runs_dir, tracking_uri, device, data_workers,
                         compile, storage)
    registry = state(ctx).registry()
    if spec is not None:
        from kdbench.engine.spec import read_spec

        job_spec = read_spec(spec)
    else:
        from kdbench.runner import job_spec as spec_of

        job_spec = spec_of(settings, registry, job)
    run_id = execute_job(job_spec, settings, registry)
    console.print(f"[green]ok[/] Job {job_spec.job.id}: MLflow run {run_id}")

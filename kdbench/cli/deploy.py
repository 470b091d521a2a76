"""``kdbench export`` (a finished Job as a model folder) and ``kdbench predict`` (new cases
with an exported model); docs/predict.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdbench.cli.common import console, err_console, esc, state
from kdbench.cli.run import DataDir, RunsDir, Storage
from kdbench.errors import KdbenchError


def export(
    ctx: typer.Context,
    protocol: Annotated[Path, typer.Argument(help="Protocol YAML file.")],
    out: Annotated[Path, typer.Option("--out", help="The model folder to write (or the zip "
                                      "file, with --zip).")],
    job: Annotated[str | None, typer.Option("--job", help="Job id (see `kdbench plan`).")] = None,
    strategy: Annotated[str | None, typer.Option(
        "--strategy", help="Strategy label, with --n and --seed (instead of --job).")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Training-set size N.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Training seed.")] = None,
    scenario: Annotated[str | None, typer.Option(
        "--scenario", help="Scenario name, when the protocol has several.")] = None,
    as_zip: Annotated[bool, typer.Option("--zip", help="Write one zip file.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite",
                                            help="Replace an existing --out.")] = False,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
    storage: Storage = None,
) -> None:
    """Export a finished Job as a self-contained model folder with its model card."""
    from kdbench.data.protocol_data import ensure_data
    from kdbench.deploy.export import export_job, select_job
    from kdbench.protocol import load_protocol
    from kdbench.tuning.resolved import plan_protocol

    registry = state(ctx).registry()
    loaded = load_protocol(protocol, registry)
    plan = plan_protocol(loaded, registry, storage)
    chosen = select_job(plan, job, strategy, n, seed, scenario)
    data = ensure_data(loaded, registry, data_dir)
    path = export_job(chosen, plan, registry, data, runs_dir, out, as_zip=as_zip,
                      overwrite=overwrite)
    console.print(f"[green]ok[/] Job {chosen.id} ({esc(chosen.component)}, N={chosen.n}, seed "
                  f"{chosen.seed}) exported to {esc(path)}; model card: "
                  f"{esc(path if as_zip else path / 'MODEL_CARD.md')}")


def predict(
    ctx: typer.Context,
    model: Annotated[list[Path], typer.Option("--model", help="A folder `kdbench export` "
                                              "wrote; repeat it to route (with --route).")],
    input_dir: Annotated[Path, typer.Option("--input", help="Cases: a BraTS release, an nnU-Net "
                                            "raw dataset, or <case>/<modality>.nii.gz.")],
    output_dir: Annotated[Path, typer.Option("--output", help="Where <case>.nii.gz are "
                                             "written.")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    labels: Annotated[str | None, typer.Option(
        "--labels", help="Label values written: brats2021 (1, 2, 4) or brats2023 (1, 2, 3); "
        "default: the training data's.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace predictions already in --output.")] = False,
    route: Annotated[Path | None, typer.Option(
        "--route", help="A report folder (or its results.json): each case goes to the model "
        "it ranks best for the sequences the case has; recorded in routing.csv.")] = None,
) -> None:
    """Segment new cases with exported models, from the sequences each case has."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from kdbench.deploy.model_folder import open_model
    from kdbench.deploy.predict import predict_cases

    registry = state(ctx).registry()
    exported = [open_model(folder) for folder in model]
    router = None
    if route is not None:
        from kdbench.deploy.route import router as make_router

        directions = {name: registry.metrics.get(name).higher_is_better
                      for name in registry.metrics.names()}
        router = make_router(exported, route, directions)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console) as progress:
        task = progress.add_task("predicting", total=None)
        result = predict_cases(exported, registry, input_dir, output_dir, route=router,
                               device=device, labels=labels, overwrite=overwrite,
                               progress=lambda case: progress.advance(task))
    by_subset: dict[str, int] = {}
    for subset, _ in result.written.values():
        key = "+".join(subset)
        by_subset[key] = by_subset.get(key, 0) + 1
    for subset, count in sorted(by_subset.items()):
        console.print(f"[green]ok[/] {count} case(s) predicted from {esc(subset)} into "
                      f"{esc(output_dir)}")
    if router is not None:
        console.print(f"routing by the report's {esc(router.region)} {esc(router.metric)}: "
                      f"{esc(output_dir / 'routing.csv')}")
    for message in result.refused.values():
        err_console.print(f"[red]not predicted[/] {esc(message)}", soft_wrap=True)
    if result.refused:
        raise KdbenchError(f"{len(result.refused)} case(s) not predicted (above); "
                           f"{len(result.written)} written")

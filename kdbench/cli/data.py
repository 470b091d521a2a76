"""``kdbench data ...``: synthetic data and, later, ingestion of releases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdbench.cli.common import console, esc, state
from kdbench.errors import KdbenchError

app = typer.Typer(help="Generate and prepare data.", no_args_is_help=True)


def _parse_options(pairs: list[str]) -> dict[str, object]:
    import yaml

    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise KdbenchError(f"--option {pair!r} must be KEY=VALUE, e.g. --option cases=12")
        options[key.strip()] = yaml.safe_load(value)
    return options


@app.command("synth")
def synth(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the release into.")],
    protocol: Annotated[
        Path | None,
        typer.Option("--protocol", help="Take the dataset and its options from this protocol."),
    ] = None,
    dataset: Annotated[str, typer.Option(help="Synthetic dataset plugin.")] = "phantom",
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="Dataset option KEY=VALUE (repeatable), e.g. "
                     "cases=12, shape=[48,48,48], seed=1."),
    ] = None,
) -> None:
    """Write a synthetic BraTS-layout release (the phantom by default)."""
    from kdbench.data.synthetic import generate_synthetic

    registry = state(ctx).registry()
    options: dict[str, object] = {}
    if protocol is not None:
        from kdbench.protocol import load_protocol

        spec = load_protocol(protocol, registry).dataset
        dataset, options = spec.source, dict(spec.options)
    options.update(_parse_options(option or []))
    folder = generate_synthetic(registry, dataset, out, options)
    console.print(f"[green]ok[/] {esc(dataset)} written to {esc(folder)}")


@app.command("prepare")
def prepare(
    ctx: typer.Context,
    source: Annotated[Path | None, typer.Option("--source", help="The release folder.")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Name of the prepared dataset.")
    ] = None,
    protocol: Annotated[
        Path | None,
        typer.Option("--protocol", help="Instead of --source/--name: prepare (and split) the "
                     "protocol's dataset, generating it first if it is synthetic."),
    ] = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", envvar="KDBENCH_DATA_DIR",
                           help="Where prepared datasets live.")
    ] = Path("data"),
    reader: Annotated[
        str | None, typer.Option(help="Force a dataset reader (default: detect).")
    ] = None,
    backbone: Annotated[str, typer.Option(help="Backbone whose preprocessing to run.")] = "nnunet",
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="Backbone option KEY=VALUE, e.g. planner=ResEncM."),
    ] = None,
    exclude_bad: Annotated[
        bool, typer.Option("--exclude-bad", help="Leave bad cases out (listed beside the "
                           "dataset) instead of stopping.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Redo a prepared dataset.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Check a BraTS release (or nnU-Net raw dataset) and preprocess it once for all strategies."""
    registry = state(ctx).registry()
    if protocol is not None:
        if source is not None or name is not None:
            raise KdbenchError("give either --protocol or --source with --name, not both")
        from kdbench.data.protocol_data import ensure_data
        from kdbench.protocol import load_protocol

        data = ensure_data(load_protocol(protocol, registry), registry, data_dir, force=force,
                           exclude_bad=exclude_bad, workers=workers)
        console.print(f"[green]ok[/] {esc(data.dataset.path)}: {len(data.dataset.cases)} cases; "
                      f"splits {esc(data.splits_path)} ({len(data.splits.test)} test cases, "
                      f"pool {len(data.splits.pool)})")
        return
    if source is None or name is None:
        raise KdbenchError("give --source DIR and --name NAME (or --protocol FILE)")
    from kdbench.data.prepare import prepare_dataset

    result = prepare_dataset(
        registry, source, name, data_dir, reader=reader, backbone=backbone,
        backbone_options=_parse_options(option or []), exclude_bad=exclude_bad, force=force,
        workers=workers,
    )
    if not result.created:
        console.print(f"[green]ok[/] {esc(result.path)} is already prepared from this source "
                      "(nothing to do; --force redoes it)")
        return
    excluded = f", {len(result.excluded)} excluded (see excluded.json)" if result.excluded else ""
    console.print(f"[green]ok[/] {esc(result.path)}: {result.cases} cases prepared{excluded}")

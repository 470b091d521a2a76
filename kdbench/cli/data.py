"""``kdbench data ...``: synthetic data and, later, ingestion of releases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdbench.cli.common import console, state
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
    from kdbench.data.synthesize import synthesize

    registry = state(ctx).registry()
    options: dict[str, object] = {}
    if protocol is not None:
        from kdbench.protocol import load_protocol

        spec = load_protocol(protocol, registry).dataset
        dataset, options = spec.source, dict(spec.options)
    options.update(_parse_options(option or []))
    folder = synthesize(registry, dataset, out, options)
    console.print(f"[green]ok[/] {dataset} written to {folder}")

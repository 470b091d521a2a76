"""``kdbench protocol ...``: checking protocol files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdbench.cli.common import console, esc, print_json, state

app = typer.Typer(help="Check protocol files.", no_args_is_help=True)


@app.command("validate")
def validate(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Protocol YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the validated protocol.")] = False,
) -> None:
    """Check a protocol against the schema and the loaded plugins; every problem is listed."""
    from kdbench.protocol import load_protocol

    protocol = load_protocol(path, state(ctx).registry())
    if as_json:
        print_json(protocol.model_dump(mode="json"))
        return
    scenarios = "; ".join(f"{s.name}: {s.describe()}" for s in protocol.scenarios)
    console.print(
        f"[green]ok[/] {esc(path)}: protocol {protocol.name!r} v{protocol.version}, "
        f"{len(protocol.strategies)} strategies, N = {list(protocol.training_sizes)}, "
        f"seeds {list(protocol.seeds)}, scenarios {scenarios}"
    )

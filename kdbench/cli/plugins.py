"""``kdbench plugins``: what is loaded."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from kdbench.cli.common import console, esc, print_json, state


def plugins(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List every plugin, the hooks it implements and the names it registered."""
    registry = state(ctx).registry()
    if as_json:
        print_json(registry.to_json())
        return
    table = Table(title="Plugins", show_lines=False)
    for column in ("plugin", "registered", "source"):
        table.add_column(column)
    for info in registry.plugins:
        registered = "; ".join(f"{cat}: {', '.join(names)}" for cat, names in
                               info.registered.items())
        table.add_row(esc(info.name), esc(registered or "-"), esc(info.source))
    console.print(table)
    for category, reg in registry.categories.items():
        if len(reg):
            rows = ", ".join(f"{n} (v{reg.get(n).version})" for n in reg.names())
            console.print(f"[bold]{category}[/]: {rows}")

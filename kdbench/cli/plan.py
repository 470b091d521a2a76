"""``kdbench plan``: the Jobs a protocol expands into."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kdbench.cli.common import console, print_json, state


def plan(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Protocol YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the DAG as JSON.")] = False,
) -> None:
    """Expand a protocol into its DAG of Jobs (ids, dependencies, waves)."""
    from kdbench.plan import build_plan, modality_summary
    from kdbench.protocol import load_protocol

    registry = state(ctx).registry()
    result = build_plan(load_protocol(path, registry), registry)
    if as_json:
        print_json(result.to_json())
        return
    waves = result.waves()
    table = Table(title=f"Plan of {result.protocol.name} v{result.protocol.version}")
    for column in ("wave", "job", "kind", "component", "N", "seed", "modalities", "needs"):
        table.add_column(column, no_wrap=column in ("job", "modalities", "needs"))
    for index, wave in enumerate(waves):
        for job in wave:
            needs = ", ".join(f"{role} {jid}" for role, jid in sorted(job.depends_on.items()))
            table.add_row(str(index), job.id, job.kind, job.component, str(job.n),
                          str(job.seed), modality_summary(job), needs or "-")
    console.print(table)
    plural = "" if len(waves) == 1 else "s"
    console.print(f"{len(result.jobs)} jobs in {len(waves)} wave{plural}")

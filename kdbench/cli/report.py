"""``kdbench report``: the tables, figures, tests and benefit-vs-N analysis of a protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdbench.cli.common import console, esc, state
from kdbench.cli.run import DataDir, RunsDir, Storage, TrackingUri


def report(
    ctx: typer.Context,
    protocol: Annotated[Path, typer.Argument(help="Protocol YAML file.")],
    reports_dir: Annotated[Path, typer.Option(
        "--reports-dir", help="Reports go to <reports-dir>/<protocol>/<date>_<commit>/.")
    ] = Path("reports"),
    output: Annotated[Path | None, typer.Option(
        "--output", help="Write the report to exactly this folder instead.")] = None,
    date: Annotated[str | None, typer.Option(
        "--date", help="Date in the folder name and the report (YYYY-MM-DD; default: today, "
        "UTC).")] = None,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
    tracking_uri: TrackingUri = None,
    storage: Storage = None,
) -> None:
    """Write the report of a protocol's complete runs: tables (Markdown, LaTeX, CSV), figures
    (PNG, SVG), paired statistics, N*, results.json and index.html."""
    import datetime as dt

    from kdbench.errors import KdbenchError
    from kdbench.report.build import ReportSettings, write_report

    if date is not None:
        try:
            dt.date.fromisoformat(date)
        except ValueError:
            raise KdbenchError(f"--date {date!r} is not a date; use YYYY-MM-DD") from None
    settings = ReportSettings(protocol, data_dir, runs_dir, tracking_uri, reports_dir, output,
                              date, list(state(ctx).plugins_dirs), storage)
    index = write_report(settings, state(ctx).registry())
    console.print(f"report: {esc(index)}")

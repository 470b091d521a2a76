"""``kdbench report``: the tables, figures, tests and benefit-vs-N analysis of a protocol's runs
or of any tidy per-case table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kdbench.cli.common import console, esc, key_values, state
from kdbench.cli.run import DataDir, RunsDir, Storage, TrackingUri


def report(
    ctx: typer.Context,
    protocol: Annotated[Path | None, typer.Argument(
        help="Protocol YAML file (its runs, or with --per-case its statistics).")] = None,
    per_case: Annotated[Path | None, typer.Option(
        "--per-case", help="Report this tidy per-case CSV (strategy, n, seed, case, region, "
        "metric, value; optional scenario, subset) instead of MLflow runs.")] = None,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="Without a protocol: the strategy to compare against.")] = None,
    margin: Annotated[str | None, typer.Option(
        "--margin", help="Without a protocol: equivalence margins per metric, e.g. "
        "dice=0.02,hd95=2.")] = None,
    primary: Annotated[str | None, typer.Option(
        "--primary", help="Without a protocol: the primary endpoint, e.g. "
        "strategy=kd,scenario=t1ce_only,region=WT,metric=dice[,subset=t1ce].")] = None,
    alpha: Annotated[float | None, typer.Option(
        "--alpha", help="Without a protocol: the level of every test (default 0.05).")] = None,
    bootstrap: Annotated[int | None, typer.Option(
        "--bootstrap", help="Without a protocol: bootstrap resamples (default 1000).")] = None,
    correction: Annotated[str | None, typer.Option(
        "--correction", help="Without a protocol: holm, bonferroni, fdr_bh or none.")] = None,
    test: Annotated[str | None, typer.Option(
        "--test", help="Without a protocol: the per-case test, wilcoxon or ttest.")] = None,
    contrast: Annotated[list[str] | None, typer.Option(
        "--contrast", help="Without a protocol: a contrast NAME=STRATEGY:CONTROL, e.g. "
        "privileged=kd:kd_born_again (repeat for more).")] = None,
    strategies: Annotated[str | None, typer.Option(
        "--strategies", help="Without a protocol: table order of the strategies, "
        "comma-separated (default: the baseline, then as they appear).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Without a protocol: the report's name (default: the CSV's stem).")
    ] = None,
    reports_dir: Annotated[Path, typer.Option(
        "--reports-dir", help="Reports go to <reports-dir>/<name>/<date>_<commit>/.")
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
    """Write a report: tables (Markdown, LaTeX, CSV), figures (PNG, SVG), tests with the
    training runs as the unit, N*_δ, results.json and index.html, of a protocol's complete
    runs or of a per-case table (`--per-case`, with a protocol's statistics or the options)."""
    import datetime as dt

    from kdbench.errors import KdbenchError
    from kdbench.report.build import ReportSettings, write_report

    if date is not None:
        try:
            dt.date.fromisoformat(date)
        except ValueError:
            raise KdbenchError(f"--date {date!r} is not a date; use YYYY-MM-DD") from None
    statistics: dict[str, Any] = {}
    for key, value in (("baseline", baseline), ("alpha", alpha), ("bootstrap", bootstrap),
                       ("correction", correction), ("test", test)):
        if value is not None:
            statistics[key] = value
    if margin is not None:
        try:
            given = key_values("--margin", margin, "dice=0.02,hd95=2")
            statistics["margin"] = {k: float(v) for k, v in given.items()}
        except ValueError:
            raise KdbenchError(f"--margin {margin!r}: each margin is a number, e.g. "
                               "--margin dice=0.02,hd95=2") from None
    if primary is not None:
        statistics["primary"] = key_values("--primary", primary,
                                           "strategy=kd,scenario=t1ce_only,region=WT")
    if contrast:
        statistics["contrasts"] = [_contrast(text) for text in contrast]
    if protocol is None and per_case is None:
        raise KdbenchError("give a protocol file, a per-case table (--per-case FILE.csv), or "
                           "both")
    order = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    if protocol is not None and (order or name):
        given = " and ".join(o for o, v in (("--strategies", order), ("--name", name)) if v)
        raise KdbenchError(f"{given}: a protocol's report takes its strategies and name from "
                           f"{protocol}; drop them, or the protocol")
    settings = ReportSettings(protocol, data_dir, runs_dir, tracking_uri, reports_dir, output,
                              date, list(state(ctx).plugins_dirs), storage, per_case,
                              statistics, order, name)
    index = write_report(settings, state(ctx).registry())
    console.print(f"report: {esc(index)}")


def _contrast(text: str) -> dict[str, str]:
    """``privileged=kd:kd_born_again`` -> a contrast's fields."""
    from kdbench.errors import KdbenchError

    name, _, pair = text.partition("=")
    strategy, _, control = pair.partition(":")
    if not (name.strip() and strategy.strip() and control.strip()):
        raise KdbenchError(f"--contrast {text!r}: write NAME=STRATEGY:CONTROL, e.g. "
                           "--contrast privileged=kd:kd_born_again")
    return {"name": name.strip(), "strategy": strategy.strip(), "control": control.strip()}

"""``kdbench plan``: the Jobs a protocol expands into, and with ``--estimate`` their GPU-hours."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from kdbench.cli.common import console, err_console, print_json, state

if TYPE_CHECKING:
    from kdbench.calibration import Calibration
    from kdbench.estimate_result import Estimate
    from kdbench.types import Plan


def plan(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Protocol YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the DAG as JSON.")] = False,
    estimate: Annotated[bool, typer.Option(
        "--estimate", help="Add GPU-hours per Job and in total, and the naive grid's.")] = False,
    calibration: Annotated[Path | None, typer.Option(
        "--calibration", help="Calibration JSON for --estimate (default: the shipped H100 "
        "reference).")] = None,
    calibrate: Annotated[bool, typer.Option(
        "--calibrate", help="Measure a calibration on this machine first (a short step "
        "benchmark; minutes) and store it in runs/calibration/.")] = False,
    calibration_size: Annotated[str, typer.Option(
        "--calibration-size", help="Network preset measured by --calibrate: brats, small or "
        "tiny.")] = "brats",
    device: Annotated[str | None, typer.Option(
        "--device", help="Device measured by --calibrate (default: cuda when available).")
    ] = None,
    compile: Annotated[bool, typer.Option(
        "--compile", help="Estimate the Jobs run with `kdbench run --compile` (the "
        "calibration's compiled step figures).")] = False,
    storage: Annotated[str | None, typer.Option(
        "--storage", envvar="KDBENCH_OPTUNA_STORAGE",
        help="Optuna storage of the tuning studies: a finished study's best values enter its "
        "tuned Jobs (default: sqlite file optuna/studies.db).")] = None,
    augmentation: Annotated[str | None, typer.Option(
        "--augmentation", help="Estimate as if the backbone's augmentation were nnunet (CPU) "
        "or gpu (default: the protocol's).")] = None,
    power: Annotated[bool, typer.Option(
        "--power", help="Power planning from --pilot: per N, the smallest gain of the primary "
        "endpoint the protocol can detect at 80% power, and the seeds and test cases needed "
        "for its margin.")] = False,
    pilot: Annotated[Path | None, typer.Option(
        "--pilot", help="For --power: a report folder or a per-case table to take the "
        "variance components from.")] = None,
) -> None:
    """Expand a protocol into its DAG of Jobs (ids, dependencies, waves).

    A `tuned` strategy's Jobs carry their study's best values once the study has finished
    (new ids); before that, and always with --estimate (which prices the tuning too), they
    carry the tuning budget."""
    from kdbench.errors import KdbenchError
    from kdbench.plan import build_plan
    from kdbench.protocol import load_protocol

    registry = state(ctx).registry()
    result = build_plan(load_protocol(path, registry), registry)
    if power or pilot is not None:
        if not (power and pilot is not None):
            raise KdbenchError("--power needs --pilot DIR|CSV (a report folder or a per-case "
                               "table), and --pilot needs --power")
        _power(result, registry, pilot, as_json)
        return
    cost = None
    pricing = estimate or calibrate or calibration is not None or compile or augmentation
    if not pricing:
        from kdbench.tuning.resolved import resolved_plan

        result = resolved_plan(result, registry, storage)
    if pricing:
        if calibration is not None and calibrate:
            raise KdbenchError("give either --calibration FILE or --calibrate, not both")
        if calibration_size not in ("brats", "small", "tiny"):
            raise KdbenchError(f"--calibration-size {calibration_size!r}: use brats, small or "
                               "tiny")
        from kdbench.estimate import estimate as estimate_plan

        cost = estimate_plan(result, registry, _calibration(calibration, calibrate,
                                                            calibration_size, device),
                             compile=compile, augmentation=augmentation)
    if as_json:
        print_json({**result.to_json(), **({"estimate": cost.to_json()} if cost else {})})
        return
    print_plan(result, cost)


def _calibration(path: Path | None, calibrate: bool, size: str, device: str | None
                 ) -> Calibration:
    from kdbench.calibration import load_calibration, measure_calibration, save_calibration

    if not calibrate:
        return load_calibration(path)
    err_console.print(f"measuring a calibration ({size} preset; a short step benchmark) ...")
    measured = measure_calibration(size=size, device=device)
    saved = save_calibration(measured)
    err_console.print(f"calibration of {measured.device} written to {saved}; reuse it with "
                      f"--calibration {saved}")
    return load_calibration(saved)


def print_plan(result: Plan, cost: Estimate | None = None) -> None:
    """The plan's table (with GPU-hours per Job when ``cost`` is given) and its summary."""
    from kdbench.plan import modality_summary

    waves = result.waves()
    table = Table(title=f"Plan of {result.protocol.name} v{result.protocol.version}")
    columns = ["wave", "job", "kind", "component", "N", "seed", "modalities", "needs"]
    for column in columns + (["GPU-h"] if cost else []):
        table.add_column(column, no_wrap=column in ("job", "modalities", "needs"),
                         justify="right" if column == "GPU-h" else "left")
    for index, wave in enumerate(waves):
        for job in wave:
            needs = ", ".join(f"{role} {jid}" for role, jid in sorted(job.depends_on.items()))
            row = [str(index), job.id, job.kind, job.component, str(job.n), str(job.seed),
                   modality_summary(job), needs or "-"]
            if cost:
                row.append(f"{cost.job(job.id).total_h:.2f}")
            table.add_row(*row)
    console.print(table)
    plural = "" if len(waves) == 1 else "s"
    console.print(f"{len(result.jobs)} jobs in {len(waves)} wave{plural}")
    if cost:
        print_estimate(cost)


def print_estimate(cost: Estimate) -> None:
    """The totals, the naive grid, the calibration and the assumptions."""
    calibration = cost.calibration
    console.print(f"estimated GPU-hours: [bold]{cost.total_h:,.1f}[/] "
                  f"({len(cost.jobs)} Jobs {cost.jobs_h:,.1f}"
                  + (f", tuning {cost.tuning_h:,.1f} in {len(cost.studies)} "
                     f"stud{'y' if len(cost.studies) == 1 else 'ies'}" if cost.studies else "")
                  + ")")
    console.print(f"naive grid: {cost.naive_h:,.1f} GPU-hours ({cost.naive_trainings} "
                  f"trainings: every (strategy, scenario, N, seed) cell trains its own teacher "
                  f"and generator, tuning not pruned, nnU-Net's own pipeline); kdbench / naive "
                  f"= {cost.ratio:.2f}; sharing saves {cost.sharing_saved_h:,.1f} h"
                  + (f", pruning {cost.pruning_saved_h:,.1f} h" if cost.studies else "")
                  + f", the pipeline ({cost.pipeline.describe()}) {cost.pipeline_saved_h:,.1f} h")
    network = calibration.network
    size = ("×".join(str(p) for p in network.get("patch", [])) or "?") + \
        f", batch {network.get('batch', '?')}"
    where = f" ({calibration.path})" if calibration.path else ""
    console.print(f"calibration: {calibration.label}; {size}; train step "
                  f"{calibration.step_ms['train']:.1f} ms, KD step "
                  f"{calibration.step_ms['kd']:.1f} ms{where}")
    for assumption in cost.assumptions:
        console.print(f"  - {assumption}")


def _power(result: Plan, registry: Any, pilot_path: Path, as_json: bool) -> None:
    """Print the power table of the protocol's primary endpoint from a pilot."""
    from kdbench.calibration import load_calibration
    from kdbench.errors import KdbenchError
    from kdbench.estimate import count_test_cases
    from kdbench.estimate import estimate as estimate_plan
    from kdbench.report.power import plan_power, read_pilot

    protocol = result.protocol
    stats = protocol.statistics
    if stats.primary is None or stats.baseline is None:
        raise KdbenchError(f"--power plans for the primary endpoint: set statistics.baseline "
                           f"and statistics.primary in {protocol.name!r}")
    primary = stats.primary
    direction = getattr(registry.metrics.get(primary.metric), "higher_is_better", True) \
        if primary.metric in registry.metrics else True
    pilot = read_pilot(pilot_path, strategy=primary.strategy, baseline=stats.baseline,
                       region=primary.region, metric=primary.metric,
                       scenario=primary.scenario, higher_is_better=bool(direction))
    cost = estimate_plan(result, registry, load_calibration(None))
    first = protocol.seeds[0]
    hours = {n: sum(c.total_h for c, job in zip(cost.jobs, result.jobs, strict=True)
                    if job.n == n and job.seed == first) for n in protocol.training_sizes}
    margin = stats.margin.get(primary.metric)
    table = plan_power(pilot, list(protocol.training_sizes),
                       {n: len(protocol.seeds_at(n)) for n in protocol.training_sizes},
                       count_test_cases(result), stats.alpha, margin, hours)
    if as_json:
        print_json({"pilot": pilot.source, "endpoint": pilot.endpoint,
                    "pilot_sizes": sorted(pilot.per_n), "alpha": stats.alpha, "power": 0.8,
                    "rows": json_rows(table)})
        return
    grid = Table(title=f"Power of {protocol.name}: {pilot.endpoint}, α = {stats.alpha}, "
                       f"80% power")
    columns = ["N", "seeds", "cases", "sd run / case / res", "detectable gain"]
    if margin is not None:
        columns += [f"seeds for δ={margin:g}", "cases for δ", "seeds to show faded",
                    "GPU-h for δ"]
    for column in columns:
        grid.add_column(column, justify="right")
    for row in table.to_dict(orient="records"):
        cells = [f"{row['N']}{'*' if row['extrapolated'] else ''}", str(row["seeds"]),
                 str(row["cases"]),
                 f"{row['sd_run']:.4f} / {row['sd_case']:.4f} / {row['sd_residual']:.4f}",
                 f"{row['detectable']:.4f}"]
        if margin is not None:
            cells += [_count(row["seeds_for_delta"]), _count(row["cases_for_delta"]),
                      _count(row["seeds_to_show_faded"]),
                      f"{row['gpu_h_for_delta']:.1f}" if row.get("gpu_h_for_delta") == row.get(
                          "gpu_h_for_delta") and row.get("gpu_h_for_delta") is not None
                      else "-"]
        grid.add_row(*cells)
    console.print(grid)
    few = sorted(n for n, k in pilot.seeds.items() if k < 3)
    if few:
        console.print(f"[yellow]the pilot has fewer than 3 seeds at N = "
                      f"{', '.join(map(str, few))}: its run variance there rests on one degree "
                      "of freedom; plan with care[/]")
    console.print(f"pilot: {pilot.source} (N = {', '.join(map(str, sorted(pilot.per_n)))}); "
                  "* outside the pilot's N: its run variance held at the nearest pilot N's; "
                  "'-': more than 200 seeds, or no number of test cases suffices (the run "
                  "variance alone); GPU-h: the seeds for δ at that N, every strategy, on the "
                  "shipped H100 calibration (docs/reports.md, power planning)")


def _count(value: Any) -> str:
    return "-" if value is None or value != value else str(int(value))


def json_rows(table: Any) -> list[dict[str, Any]]:
    """Records with NaN as ``None``."""
    import math

    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in row.items()} for row in table.to_dict(orient="records")]

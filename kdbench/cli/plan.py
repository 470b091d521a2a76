"""``kdbench plan``: the Jobs a protocol expands into, and with ``--estimate`` their GPU-hours."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

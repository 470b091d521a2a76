"""``kdbench evaluate``: score a folder of NIfTI predictions with kdbench's metric code.

Any tool's output (nnU-Net's, another benchmark's) is scored exactly as kdbench scores its own
Jobs, so numbers compare on equal terms.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from kdbench.cli.common import console, err_console, esc, key_values, state
from kdbench.errors import KdbenchError

NIFTI: tuple[str, ...] = (".nii.gz", ".nii")
#: Reference file names tried for case ``c``, in this order (flat folder, BraTS 2021, 2023).
REFERENCE_PATTERNS: tuple[str, ...] = ("{c}{ext}", "{c}/{c}_seg{ext}", "{c}/{c}-seg{ext}")


def _case_id(path: Path) -> str | None:
    for ext in NIFTI:
        if path.name.endswith(ext) and len(path.name) > len(ext):
            return path.name[: -len(ext)]
    return None


def find_predictions(folder: Path) -> dict[str, Path]:
    """Case id -> prediction file, for every ``<case>.nii.gz`` (or ``.nii``) in ``folder``."""
    if not folder.is_dir():
        raise KdbenchError(f"prediction folder {folder} does not exist or is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        case = _case_id(path)
        if case is None or not path.is_file():
            continue
        if case in found:
            raise KdbenchError(f"case {case} has two predictions, {found[case]} and {path}; "
                               "keep one")
        found[case] = path
    return found


def find_references(folder: Path) -> dict[str, Path]:
    """Case id -> reference file: ``<case>.nii.gz``, ``<case>/<case>_seg.nii.gz`` (BraTS
    2018-2021) or ``<case>/<case>-seg.nii.gz`` (BraTS 2023); ``.nii`` accepted too."""
    if not folder.is_dir():
        raise KdbenchError(f"reference folder {folder} does not exist or is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and (case := _case_id(path)) is not None:
            found.setdefault(case, path)
        elif path.is_dir():
            for pattern in REFERENCE_PATTERNS[1:]:
                hits = [folder / pattern.format(c=path.name, ext=ext) for ext in NIFTI]
                hit = next((h for h in hits if h.is_file()), None)
                if hit is not None:
                    found.setdefault(path.name, hit)
                    break
    return found


def match_cases(
    predictions: dict[str, Path], references: dict[str, Path], allow_missing: bool
) -> tuple[dict[str, tuple[Path | None, Path]], list[str]]:
    """Pair predictions with references.

    Args:
        predictions: case -> prediction file.
        references: case -> reference file.
        allow_missing: score a reference without prediction as an empty prediction, and skip
            predictions without reference, instead of stopping.

    Returns:
        ``(pairs, skipped)``: case -> (prediction or ``None``, reference), sorted by case; and
        the predictions skipped for want of a reference.

    Raises:
        KdbenchError: unmatched files (without ``allow_missing``), or nothing to score.
    """
    no_ref = sorted(set(predictions) - set(references))
    no_pred = sorted(set(references) - set(predictions))
    if not allow_missing and (no_ref or no_pred):
        parts = []
        if no_ref:
            parts.append(f"{len(no_ref)} prediction(s) without reference: {_show(no_ref)}")
        if no_pred:
            parts.append(f"{len(no_pred)} reference(s) without prediction: {_show(no_pred)}")
        raise KdbenchError("; ".join(parts) + "; fix the folders, or pass --allow-missing to "
                           "score missing predictions as empty (BraTS convention)")
    pairs = {case: (predictions.get(case), ref) for case, ref in sorted(references.items())
             if case in predictions or allow_missing}
    if not pairs:
        raise KdbenchError("no case to score: no reference matches a prediction")
    return pairs, no_ref


def _show(cases: list[str], limit: int = 10) -> str:
    more = f" and {len(cases) - limit} more" if len(cases) > limit else ""
    return ", ".join(cases[:limit]) + more


def _summary_table(summary: Any, described: dict[str, dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    regions = list(dict.fromkeys(summary["region"]))
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("unit")
    for region in regions:
        table.add_column(f"{region} mean ± sd (median)", justify="right")
    for name, info in described.items():
        cells = []
        for region in regions:
            row = summary[(summary["metric"] == name) & (summary["region"] == region)]
            if row.empty:
                cells.append("")
                continue
            r, digits = row.iloc[0], 2 if info["unit"] else 4
            cells.append(f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f} "
                         f"({r['median']:.{digits}f})")
        table.add_row(name, info["unit"] or "-", *cells)
    return table


def evaluate(
    ctx: typer.Context,
    pred: Annotated[Path, typer.Option("--pred", help="Folder of predictions <case>.nii.gz.")],
    ref: Annotated[
        Path,
        typer.Option("--ref", help="Folder of references: <case>.nii.gz, or a BraTS release "
                     "(<case>/<case>_seg.nii.gz or <case>/<case>-seg.nii.gz)."),
    ],
    labels: Annotated[
        str, typer.Option("--labels", help="Label convention of the files: brats2021 (0,1,2,4), "
                          "brats2023 (0,1,2,3: 1 core, 2 edema) or canonical (1 edema, 2 core, "
                          "3 enhancing; nnU-Net's BraTS convention).")
    ] = "brats2021",
    pred_labels: Annotated[
        str | None, typer.Option("--pred-labels", help="The predictions' convention when it "
                                 "differs from --labels.")
    ] = None,
    metrics: Annotated[
        str | None, typer.Option("--metrics", help="Comma-separated metric names (default: "
                                 "every registered metric), e.g. dice,hd95.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write definitions, summary and per-case "
                                  "rows to this JSON file.")
    ] = None,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="Write the per-case table (case, region, "
                                  "metric, value) to this CSV file.")
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", help="Columns added to every row of --csv, e.g. "
                                 "strategy=kd,n=100,seed=0: the columns `kdbench report "
                                 "--per-case` needs.")
    ] = None,
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Score a reference without prediction as "
                           "an empty prediction (BraTS convention) and skip predictions without "
                           "reference, instead of stopping.")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    device: Annotated[
        str, typer.Option("--device", help="Device of the distance computations: cpu, cuda, "
                          "cuda:N or auto (same values on every device).")
    ] = "cpu",
) -> None:
    """Score NIfTI predictions against references (Dice, HD95, ... per region WT/TC/ET)."""
    from kdbench.metrics.regions import check_convention
    from kdbench.metrics.scoring import describe_metrics, metric_classes, score_files, summarize
    from kdbench.metrics.surface import DEVICE_ENV, resolve_device

    tags = key_values("--tag", tag, "strategy=kd,n=100,seed=0") if tag is not None else {}
    check_convention(labels)
    if pred_labels is not None:
        check_convention(pred_labels)
    try:
        device = resolve_device(device)
    except ValueError as exc:
        raise KdbenchError(str(exc)) from None
    classes = metric_classes(state(ctx).registry(), metrics)
    pairs, skipped = match_cases(find_predictions(pred), find_references(ref), allow_missing)
    if skipped:
        err_console.print(f"[yellow]warning:[/] {len(skipped)} prediction(s) without reference "
                          f"skipped: {esc(_show(skipped))}")
    empty = [case for case, (p, _) in pairs.items() if p is None]
    if empty:
        err_console.print(f"[yellow]warning:[/] {len(empty)} missing prediction(s) scored as "
                          f"empty: {esc(_show(empty))}")
    # The variable reaches the metric code in this process and in the worker processes.
    previous = os.environ.get(DEVICE_ENV)
    os.environ[DEVICE_ENV] = device
    try:
        per_case = score_files(pairs, classes, labels, workers=workers,
                               pred_convention=pred_labels)
    finally:
        if previous is None:
            os.environ.pop(DEVICE_ENV, None)
        else:
            os.environ[DEVICE_ENV] = previous
    summary = summarize(per_case)
    described = describe_metrics(classes)

    conventions = labels if pred_labels is None else f"pred {pred_labels}, ref {labels}"
    title = f"{len(pairs)} cases, labels {conventions}"
    console.print(_summary_table(summary, described, title))
    # Every definition under the table: two HD95 definitions exist, the table names its own.
    for name, info in described.items():
        console.print(f"[bold]{name}[/]: {info['definition']}", soft_wrap=True)
    if csv_out is not None:
        csv_out.parent.mkdir(parents=True, exist_ok=True)
        tagged = per_case.copy()
        for i, (column, value) in enumerate(tags.items()):
            tagged.insert(i, column, value)
        tagged.to_csv(csv_out, index=False)
        console.print(f"[green]ok[/] per-case table written to {esc(csv_out)}")
    if json_out is not None:
        payload = {
            "pred": str(pred), "ref": str(ref), "labels": labels,
            "pred_labels": pred_labels or labels, "missing_as_empty": empty,
            "skipped_without_reference": skipped, "metrics": described,
            "summary": _records(summary), "cases": _records(per_case),
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
        console.print(f"[green]ok[/] results written to {esc(json_out)}")


def _records(frame: Any) -> list[dict[str, Any]]:
    """Rows as dicts with NaN as ``None`` (a single case has no standard deviation)."""
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]

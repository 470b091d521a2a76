"""What a report is computed from: a protocol's complete MLflow runs, or a tidy per-case table
from anywhere (``kdbench report --per-case FILE.csv``), so that per-case scores of another
tool's predictions get the same statistics.

A per-case table has one row per (strategy, N, seed, case, region, metric) with its ``value``;
``scenario`` and ``subset`` are optional (:data:`DEFAULT_SCENARIO` and :data:`DEFAULT_SUBSET`
when absent). ``n`` may be spelled ``N``. A report's own ``per_case.csv`` is such a table:
reading it back reproduces the report's tables exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kdbench.errors import KdbenchError

REQUIRED = ("strategy", "N", "seed", "case", "region", "metric", "value")
OPTIONAL = ("scenario", "subset")
COLUMNS = ["strategy", "N", "seed", "scenario", "subset", "case", "region", "metric", "value"]
DEFAULT_SCENARIO, DEFAULT_SUBSET = "default", "input"
REGIONS = ("WT", "TC", "ET")


@dataclass
class ReportInput:
    """Everything a report needs besides its settings of output.

    Attributes:
        name, version, description: the protocol's, or the table's (its file stem).
        per_case: the tidy per-case table (:data:`COLUMNS`, then ``run_id, job_id``).
        statistics: the validated ``statistics`` section (a protocol's, or the options').
        strategies: in table order (the baseline first when the table gave no order).
        subsets: scenario -> how many subsets it scores (the subset tables need several).
        source: one line on where the numbers come from, shown on the page.
        protocol, plan: when the report is of a protocol (qualitative figure, tuning).
    """

    name: str
    version: str
    description: str
    per_case: pd.DataFrame
    statistics: Any
    strategies: list[str]
    subsets: dict[str, int]
    source: str
    protocol: Any = None
    plan: Any = None
    tracking_uri: str | None = None
    environment_runs: list[dict[str, Any]] = field(default_factory=list)


def read_per_case(path: Path) -> pd.DataFrame:
    """The tidy per-case table in ``path``, checked, sorted as a report writes it.

    Raises:
        KdbenchError: naming the file, and the column or the row (its line in the file) and
            the fix: a missing column, a value that is not a number, an N or seed that is not an
            integer, a region other than WT/TC/ET, a row given twice.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise KdbenchError(f"{path}: no such per-case table") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        raise KdbenchError(f"{path}: not a readable CSV table ({exc})") from None
    if "n" in table.columns and "N" not in table.columns:
        table = table.rename(columns={"n": "N"})
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise KdbenchError(
            f"{path}: missing column(s) {', '.join(missing)}; a per-case table has the columns "
            f"{', '.join(c if c != 'N' else 'n (or N)' for c in REQUIRED)} and optionally "
            f"scenario, subset (e.g. the per_case.csv of a report, or `kdbench evaluate --csv "
            f"FILE --tag strategy=S,n=N,seed=K`)")
    if table.empty:
        raise KdbenchError(f"{path}: the table has a header and no row")
    for column, default in (("scenario", DEFAULT_SCENARIO), ("subset", DEFAULT_SUBSET)):
        if column not in table.columns:
            table[column] = default
    for column in ("N", "seed"):
        table[column] = _integers(table[column], path, column)
    table["value"] = _numbers(table["value"], path)
    for column in ("strategy", "case", "region", "metric", "scenario", "subset"):
        blank = table[column].str.strip() == ""
        if blank.any():
            raise KdbenchError(f"{path}, line {int(blank.idxmax()) + 2}: empty {column}; every "
                               f"row names its {column}")
    bad = ~table["region"].isin(REGIONS)
    if bad.any():
        i = int(bad.idxmax())
        raise KdbenchError(f"{path}, line {i + 2}: region {table.at[i, 'region']!r} is not one "
                           f"of {', '.join(REGIONS)} (BraTS's whole tumour, tumour core, "
                           "enhancing tumour)")
    key = [c for c in COLUMNS if c != "value"]
    twice = table.duplicated(key, keep="first")
    if twice.any():
        i = int(twice.idxmax())
        row = ", ".join(f"{c}={table.at[i, c]}" for c in key)
        raise KdbenchError(f"{path}, line {i + 2}: a second value for ({row}); give one value "
                           "per strategy, N, seed, scenario, subset, case, region and metric")
    if "run_id" not in table.columns:
        table["run_id"] = (table["strategy"] + "/N" + table["N"].astype(str) + "/seed"
                           + table["seed"].astype(str))
    if "job_id" not in table.columns:
        table["job_id"] = table["run_id"]
    table = table[[*COLUMNS, "run_id", "job_id"]]
    return table.sort_values(COLUMNS[:-1]).reset_index(drop=True)


def _integers(column: pd.Series, path: Path, name: str) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        i = int(bad.idxmax())
        raise KdbenchError(f"{path}, line {i + 2}: {name} {column.iloc[i]!r} is not an integer "
                           f"(the training size and the seed are whole numbers)")
    return values.astype(int)


def _numbers(column: pd.Series, path: Path) -> pd.Series:
    """Floats read exactly as written (``round_trip``); ``inf``, ``nan`` and blanks allowed
    (a value that is not finite drops its case from the comparisons that need it)."""
    import numpy as np

    def parse(text: str) -> float:
        text = text.strip()
        return float("nan") if text == "" else float(text)

    values = []
    for i, text in enumerate(column):
        try:
            values.append(parse(text))
        except ValueError:
            raise KdbenchError(f"{path}, line {i + 2}: value {text!r} is not a number") from None
    return pd.Series(np.asarray(values, dtype=float), index=column.index)


def from_runs(settings: Any, registry: Any) -> ReportInput:
    """A protocol's complete MLflow runs (``settings.per_case`` unset) or, with it, the
    protocol's statistics applied to that per-case table.

    Raises:
        KdbenchError: no complete run in the tracking store (naming the store and the command
            that makes them), an unreadable record, or statistics options given with a
            protocol (its statistics are pre-registered).
    """
    from kdbench.plan import build_plan
    from kdbench.protocol import load_protocol
    from kdbench.tracking import Tracker, default_tracking_uri

    if settings.statistics:
        options = ", ".join(f"--{k}" for k in sorted(settings.statistics))
        raise KdbenchError(f"{options}: the protocol {settings.protocol_path} pre-registers "
                           "its statistics; edit its `statistics:` section, or report the "
                           "per-case table without the protocol")
    protocol = load_protocol(settings.protocol_path, registry)
    plan = build_plan(protocol, registry)
    common = {"name": protocol.name, "version": str(protocol.version),
              "description": protocol.description, "statistics": protocol.statistics,
              "strategies": [s.key for s in protocol.strategies],
              "subsets": {s.name: len(s.subsets()) for s in protocol.scenarios},
              "protocol": protocol, "plan": plan}
    if settings.per_case is not None:
        table = read_per_case(settings.per_case)
        _check_table(table, protocol.statistics, common["strategies"], settings.per_case)
        return ReportInput(per_case=table, source=f"the per-case table {settings.per_case}",
                           **common)
    from kdbench import environment
    from kdbench.report.records import per_case_table

    uri = settings.tracking_uri or default_tracking_uri()
    tracker = Tracker(plan, uri)
    table = per_case_table(tracker)
    if table.empty:
        raise KdbenchError(f"protocol {protocol.name!r} has no complete run in {uri}; run "
                           f"`kdbench run {settings.protocol_path}` first (or pass the "
                           "--tracking-uri it ran with)")
    from collections import Counter

    machines = Counter(environment.from_tags(run.data.tags) for run in tracker.complete_runs())
    runs = [{**dict(key), "jobs": jobs} for key, jobs in sorted(machines.items())]
    return ReportInput(per_case=table, source=f"complete MLflow runs in {uri}",
                       tracking_uri=uri, environment_runs=runs, **common)


def from_table(settings: Any) -> ReportInput:
    """A per-case table without a protocol: the statistics from the options
    (``settings.statistics``: ``baseline, margin, primary, alpha, bootstrap, correction,
    test``), the strategies in ``settings.strategies`` order (default: the baseline, then the
    others as they first appear).

    Raises:
        KdbenchError: an invalid option (naming it), or one that names a strategy, metric,
            scenario or subset the table does not have.
    """
    from pydantic import ValidationError

    from kdbench.protocol.errors import describe_errors
    from kdbench.protocol.models import StatisticsSpec

    table = read_per_case(settings.per_case)
    options = dict(settings.statistics)
    # a table's subsets are whatever it names (a protocol's are modality sets)
    primary = dict(options.get("primary") or {})
    subset = primary.pop("subset", None)
    if primary:
        options["primary"] = primary
    try:
        statistics = StatisticsSpec.model_validate(options)
    except ValidationError as exc:
        problems = describe_errors(exc, StatisticsSpec, None)
        raise KdbenchError("the statistics options: " + "; ".join(
            "--" + p.replace("primary.", "primary ", 1) for p in problems)) from None
    if subset is not None and statistics.primary is not None:
        statistics = statistics.model_copy(update={
            "primary": statistics.primary.model_copy(update={"subset": str(subset)})})
    present = list(dict.fromkeys(table["strategy"]))
    if settings.strategies:
        unknown = [s for s in settings.strategies if s not in present]
        if unknown:
            raise KdbenchError(f"--strategies: {unknown} not in {settings.per_case} "
                               f"(strategies: {present})")
        strategies = list(settings.strategies) + [s for s in present
                                                  if s not in settings.strategies]
    else:
        first = [statistics.baseline] if statistics.baseline in present else []
        strategies = first + [s for s in present if s not in first]
    _check_table(table, statistics, strategies, settings.per_case)
    subsets = table.groupby("scenario")["subset"].nunique()
    name = settings.name or Path(settings.per_case).stem
    return ReportInput(name=name, version="-", description=f"Per-case table {settings.per_case}.",
                       per_case=table, statistics=statistics, strategies=strategies,
                       subsets={str(k): int(v) for k, v in subsets.items()},
                       source=f"the per-case table {settings.per_case}")


def _check_table(table: pd.DataFrame, statistics: Any, strategies: list[str],
                 path: Path) -> None:
    """The statistics name strategies, metrics, a scenario and a subset the table has."""
    present = set(table["strategy"])
    if statistics.baseline is not None and statistics.baseline not in present:
        raise KdbenchError(f"baseline {statistics.baseline!r} has no row in {path} "
                           f"(strategies: {sorted(present)})")
    missing = [s for s in strategies if s not in present]
    if missing and len(missing) == len(strategies):
        raise KdbenchError(f"{path} has no row of the strategies {strategies} (it has "
                           f"{sorted(present)})")
    for contrast in statistics.contrasts:
        for side in ("strategy", "control"):
            if getattr(contrast, side) not in present:
                raise KdbenchError(f"contrast {contrast.name!r}: {side} "
                                   f"{getattr(contrast, side)!r} has no row in {path} "
                                   f"(strategies: {sorted(present)})")
    metrics = set(table["metric"])
    for metric in statistics.margin:
        if metric not in metrics:
            raise KdbenchError(f"margin for {metric!r}: {path} has no {metric} rows (metrics: "
                               f"{sorted(metrics)})")
    primary = statistics.primary
    if primary is None:
        return
    rows = table[table["scenario"] == primary.scenario]
    for what, value, pool in (("strategy", primary.strategy, present),
                              ("scenario", primary.scenario, set(table["scenario"])),
                              ("metric", primary.metric, metrics)):
        if value not in pool:
            raise KdbenchError(f"primary {what} {value!r}: {path} has none (its {what}s: "
                               f"{sorted(pool)})")
    subsets = sorted(set(rows["subset"]))
    if primary.subset is None and len(subsets) > 1:
        raise KdbenchError(f"primary: scenario {primary.scenario!r} has {len(subsets)} subsets "
                           f"in {path}: name one (subset=...; subsets: {subsets})")
    if primary.subset is not None and primary.subset not in subsets:
        raise KdbenchError(f"primary subset {primary.subset!r}: not in scenario "
                           f"{primary.scenario!r} of {path} (subsets: {subsets})")


def primary_endpoint(source: ReportInput) -> Any:
    """The primary endpoint with its subset resolved (``None`` if unset)."""
    from kdbench.report.analysis import Primary

    spec = source.statistics.primary
    if spec is None:
        return None
    if spec.subset is not None:
        subset = spec.subset
    elif source.protocol is not None:
        from kdbench.modalities import label

        scenario = next(s for s in source.protocol.scenarios if s.name == spec.scenario)
        subset = label(scenario.subsets()[0])
    else:
        subset = sorted(set(source.per_case.loc[source.per_case["scenario"] == spec.scenario,
                                                "subset"]))[0]
    return Primary(spec.strategy, spec.scenario, subset, spec.region, spec.metric)

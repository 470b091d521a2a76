"""``kdbench report``: from a protocol's complete MLflow runs, or from a tidy per-case table
(:mod:`kdbench.report.inputs`), to ``reports/<name>/<date>_<short-commit>/``.

The folder holds ``index.html`` (jinja2 templates), ``results.json`` (every number, machine
readable), ``per_case.csv`` (the tidy table it was computed from), ``tables/`` (Markdown,
LaTeX, CSV) and ``figures/`` (PNG, SVG). It is written beside its final place and moved there
in one rename, so a crash never leaves half a report; rerunning on the same day and commit
replaces that day's report. The same records always give the same bytes (the date aside).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kdbench.errors import KdbenchError
from kdbench.registry import Registry
from kdbench.version import __version__


@dataclass
class ReportSettings:
    """What ``kdbench report`` reads and where it writes.

    A report is of a protocol's complete runs (``protocol_path``), of a per-case table
    (``per_case``) with the protocol's statistics, or of a per-case table alone, its
    statistics from ``statistics`` (the options ``baseline, margin, primary, alpha, bootstrap,
    correction, test``) and its strategy order from ``strategies``.
    """

    protocol_path: Path | None
    data_dir: Path = Path("data")
    runs_dir: Path = Path("runs")
    tracking_uri: str | None = None
    reports_dir: Path = Path("reports")
    output: Path | None = None  # the folder itself (default <reports>/<name>/<date>_<sha>)
    date: str | None = None  # YYYY-MM-DD (default: today, UTC)
    plugins_dirs: list[Path] = field(default_factory=list)
    optuna_storage: str | None = None  # the tuning studies (default: optuna/studies.db)
    per_case: Path | None = None
    statistics: dict[str, Any] = field(default_factory=dict)
    strategies: list[str] | None = None
    name: str | None = None  # of a table's report (default: the file's stem)


def write_report(settings: ReportSettings, registry: Registry | None = None) -> Path:
    """Write the report; return its ``index.html``.

    Raises:
        KdbenchError: no complete run of the protocol in the tracking store (the message names
            the store and the command that makes them), an unreadable record, or a per-case
            table or statistics option that cannot be used (naming the file, row or option).
    """
    from kdbench.plugin_manager import load_plugins
    from kdbench.report.analysis import Settings, analyse
    from kdbench.report.inputs import from_runs, from_table, primary_endpoint
    from kdbench.tracking import git_commit

    registry = registry or load_plugins(settings.plugins_dirs)
    if settings.protocol_path is None:
        if settings.per_case is None:
            raise KdbenchError("give a protocol, a per-case table (--per-case FILE.csv), or "
                               "both")
        source = from_table(settings)
    else:
        source = from_runs(settings, registry)
    stats = source.statistics
    directions = {name: bool(registry.metrics.get(name).higher_is_better)
                  for name in registry.metrics.names()
                  if getattr(registry.metrics.get(name), "higher_is_better", None) is not None}
    analysis = analyse(source.per_case,
                       Settings(stats.baseline, stats.test, stats.correction, stats.alpha,
                                stats.bootstrap, directions, dict(stats.margin),
                                primary_endpoint(source)),
                       source.strategies)
    date = settings.date or dt.datetime.now(dt.UTC).date().isoformat()
    commit = git_commit()
    target = settings.output or (Path(settings.reports_dir) / source.name
                                 / f"{date}_{commit}")
    context = {"protocol": {"name": source.name, "version": source.version,
                            "description": source.description},
               "source": source.source, "date": date, "commit": commit,
               "version": __version__, "tracking_uri": source.tracking_uri,
               "records": _records(source.per_case),
               "tuning": _tuning(source.plan, registry, settings.optuna_storage),
               "environment": _environment(source.environment_runs)}
    staging = target.parent / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write(staging, analysis, context, settings, source, registry)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _replace(staging, target)
    return target / "index.html"


def _tuning(plan: Any, registry: Registry, storage: str | None) -> list[dict[str, Any]]:
    """The tuning budget each ``tuned`` strategy received (its study's trials)."""
    if plan is None or plan.protocol.tuning is None:
        return []
    from kdbench.tuning.studies import default_storage
    from kdbench.tuning.summary import study_summaries

    return [{"study": s.target.name, "strategy": s.target.label, "scenario": s.target.scenario,
             "N": s.target.n, "budget": s.budget, "complete": s.complete, "pruned": s.pruned,
             "failed": s.failed, "best_val_dice": s.best_value,
             "best_params": dict(sorted(s.best_params.items()))}
            for s in study_summaries(plan, registry, storage or default_storage())]


def _environment(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's own machine and versions, and each distinct machine and install the
    complete runs were computed on (from their tags), with how many Jobs were computed there
    (none known for a per-case table)."""
    from kdbench import environment

    here = environment.describe()
    return {"report": {k: here[k] for k in ("machine", "packages", "versions_sha256")},
            "runs": runs}


def _records(per_case: pd.DataFrame) -> dict[str, int]:
    return {"runs": int(per_case["run_id"].nunique()), "jobs": int(per_case["job_id"].nunique()),
            "cases": int(per_case["case"].nunique()), "rows": int(len(per_case))}


def _replace(staging: Path, target: Path) -> None:
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _write(folder: Path, analysis: Any, context: dict[str, Any], settings: ReportSettings,
           source: Any, registry: Registry) -> None:
    from kdbench.report import figures
    from kdbench.report.tables import main_tables, subset_tables

    protocol = source.protocol
    analysis.per_case.to_csv(folder / "per_case.csv", index=False, lineterminator="\n")
    tables_dir, figures_dir = folder / "tables", folder / "figures"
    tables = main_tables(analysis)
    subsets = subset_tables(analysis, source.subsets)
    for table in tables + subsets:
        table.write(tables_dir)
    results = results_json(analysis, context)
    for name, rows in _flat_tables(results).items():
        frame = pd.DataFrame(rows)
        for column in ("seeds", "cases"):
            if column in frame:
                frame[column] = frame[column].astype("Int64")
        frame.to_csv(tables_dir / f"{name}.csv", index=False, lineterminator="\n")
    sections = []
    views = analysis.summary[["scenario", "subset"]].drop_duplicates()
    dataset, convention = (_dataset(protocol, registry, settings.data_dir)
                           if protocol is not None else (None, ""))
    with figures.plotting():
        # the reporters' sections first: a broken reporter stops the report before the
        # built-in figures are drawn (they are shown after the built-in sections)
        extra = _plugin_sections(analysis, registry, tables_dir, figures_dir)
        for scenario, subset in views.itertuples(index=False):
            section = {"scenario": scenario, "subset": subset, "figures": [],
                       "tables": [t for t in tables if t.name.startswith(
                           f"table_{scenario}_{subset.replace('+', '-')}_")],
                       "benefit": [r for r in results["benefit"]
                                   if r["scenario"] == scenario and r["subset"] == subset],
                       "friedman": [r for r in results["friedman"]
                                    if r["scenario"] == scenario and r["subset"] == subset],
                       "versus": [r for r in results["tests"] if r["unit"] == "seed"
                                  and r["scenario"] == scenario and r["subset"] == subset],
                       "conditional": [r for r in results["tests"] if r["unit"] == "case"
                                       and r["scenario"] == scenario
                                       and r["subset"] == subset]}
            stem = f"{scenario}_{subset.replace('+', '-')}"
            made = [(f"learning_curve_{stem}_{metric}", figures.learning_curves(
                analysis, scenario, subset, metric), f"Learning curves ({metric})")
                for metric in ("dice", "hd95")
                if ((analysis.summary["scenario"] == scenario)
                    & (analysis.summary["subset"] == subset)
                    & (analysis.summary["metric"] == metric)).any()]
            made += [(f"gain_{stem}", figures.gain_curves(analysis, scenario, subset),
                      "Gain over the baseline vs N"),
                     (f"rank_stability_{stem}", figures.rank_stability_plot(
                         analysis, scenario, subset), "Rank stability (bootstrap)"),
                     (f"critical_difference_{stem}", figures.cd_diagrams(
                         analysis, scenario, subset), "Critical-difference diagrams")]
            if dataset is not None:
                from kdbench.report.qualitative import panels

                slices, caption = panels(analysis, scenario, subset, settings.runs_dir,
                                         protocol.name, dataset, convention)
                if slices:
                    made.append((f"qualitative_{stem}", figures.qualitative(
                        slices, [s for s in analysis.strategies
                                 if s in slices[0]["predictions"]], caption),
                        "Qualitative: " + caption))
                else:
                    section["qualitative_missing"] = caption
            elif protocol is None:
                section["qualitative_missing"] = ("a per-case table holds no images or "
                                                  "predictions")
            else:
                section["qualitative_missing"] = "the prepared dataset is not on this machine"
            for name, fig, title in made:
                if fig is not None:
                    figures.save(fig, figures_dir, name)
                    section["figures"].append({"name": name, "title": title})
            sections.append(section)
    (folder / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True,
                                                    ensure_ascii=False) + "\n")
    from kdbench.report.html import render

    (folder / "index.html").write_text(render(context, analysis, sections, subsets, extra))


def _plugin_sections(analysis: Any, registry: Registry, tables_dir: Path, figures_dir: Path
                     ) -> list[dict[str, Any]]:
    """The sections of the registered reporters, in name order, their files written."""
    from kdbench.components.reporter import ReportSection
    from kdbench.report import figures
    from kdbench.report.tables import Table

    out = []
    for name in sorted(registry.reporters.names()):
        where = registry.reporters.entry(name).where
        section = registry.reporters.get(name)().section(analysis)
        if section is None:
            continue
        if not isinstance(section, ReportSection) or not all(
                isinstance(t, Table) for t in section.tables):
            raise KdbenchError(
                f"reporter {name!r} ({where}) returned {type(section).__name__} from "
                "section(); return a kdbench.ReportSection whose tables are "
                "kdbench.report.tables.Table objects, or None")
        for table in section.tables:
            table.write(tables_dir)
        shown = []
        for stem, fig, caption in section.figures:
            figures.save(fig, figures_dir, f"{name}_{stem}")
            shown.append({"name": f"{name}_{stem}", "title": caption})
        out.append({"reporter": name, "title": section.title, "text": section.text,
                    "tables": section.tables, "figures": shown})
    return out


def _flat_tables(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The CSV files of ``tables/``: results.json's lists, nested values spread into columns
    (mappings) or their own file (the benefit analysis per N)."""
    group = ("scenario", "subset", "N", "region", "metric")
    friedman = [{**{k: r[k] for k in (*group, "statistic", "p", "cases",
                                      "critical_difference")},
                 **{f"mean_rank_{s}": v for s, v in r["mean_ranks"].items()}}
                for r in results["friedman"]]
    stability = [{**{k: r[k] for k in (*group, "kendall_tau_median")}, "strategy": s,
                  "rank": r["ranking"][s], "share_first": r["first"][s],
                  **{f"share_rank_{k}": v for k, v in r["rank_shares"][s].items()}}
                 for r in results["rank_stability"] for s in r["ranking"]]
    n_star = [{k: v for k, v in r.items()
               if k not in ("per_n", "n_star_bootstrap_shares", "curve")}
              | {f"state_N{row['N']}": row.get("state") for row in r["per_n"]}
              | {f"n_star_share_{k}": v for k, v in r["n_star_bootstrap_shares"].items()}
              for r in results["benefit"]]
    keys = ("scenario", "subset", "strategy", "region", "metric", "delta")
    per_n = [{k: r[k] for k in keys} | row for r in results["benefit"] for row in r["per_n"]]
    curves = [{k: r[k] for k in keys} | row for r in results["benefit"] for row in r["curve"]]
    tables = {"summary": results["summary"], "tests": results["tests"],
              "case_tests": results["case_tests"], "friedman": friedman,
              "rank_stability": stability, "n_star": n_star, "benefit_per_n": per_n,
              "gain_curves": curves}
    if results["tuning"]:
        tables["tuning"] = [{k: v for k, v in r.items() if k != "best_params"}
                            | {f"best_{k}": v for k, v in r["best_params"].items()}
                            for r in results["tuning"]]
    return tables


def _dataset(protocol: Any, registry: Registry, data_dir: Path) -> tuple[Any, str]:
    """The prepared dataset (for the qualitative figure), if it is on this machine."""
    from kdbench.data.prepared import PreparedDataset
    from kdbench.data.protocol_data import dataset_name

    path = Path(data_dir) / dataset_name(protocol, registry)
    try:
        dataset = PreparedDataset.open(path)
    except KdbenchError:
        return None, ""
    return dataset, dataset.marker["label_convention"]


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN/inf to ``None``, floats to 10 significant
    digits (the last bits of a float differ between BLAS builds; the report should not)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.10g}")
    return value


def results_json(analysis: Any, context: dict[str, Any]) -> dict[str, Any]:
    """Every number of the report, plain JSON."""
    protocol = context["protocol"]
    settings = analysis.settings
    friedman = []
    for key, result in analysis.friedman.items():
        friedman.append({**dict(zip(("scenario", "subset", "N", "region", "metric"), key,
                                    strict=True)),
                         "statistic": result.statistic, "p": result.p, "cases": result.cases,
                         "mean_ranks": result.ranks,
                         "critical_difference": result.critical_difference,
                         "nemenyi_p": result.nemenyi.to_dict()})
    stability = []
    for key, result in analysis.stability.items():
        stability.append({**dict(zip(("scenario", "subset", "N", "region", "metric"), key,
                                     strict=True)),
                          "ranking": result.ranking, "first": result.first,
                          "kendall_tau_median": result.kendall_tau_median,
                          "rank_shares": {s: {str(r): v for r, v in row.items()}
                                          for s, row in result.frequencies.iterrows()}})
    benefit = [_benefit_json(key, result, settings.baseline)
               for key, result in analysis.benefit.items()]
    return _clean({
        "protocol": {"name": protocol["name"], "version": protocol["version"]},
        "source": context["source"],
        "generated": context["date"], "commit": context["commit"],
        "kdbench_version": context["version"], "records": context["records"],
        "statistics": {"baseline": settings.baseline, "test": settings.test,
                       "correction": settings.correction, "alpha": settings.alpha,
                       "bootstrap": settings.resamples, "margin": dict(settings.margin),
                       "primary": None if settings.primary is None
                       else dataclasses.asdict(settings.primary)},
        "strategies": analysis.strategies,
        "summary": analysis.summary.to_dict(orient="records"),
        "tests": tests_table(analysis).to_dict(orient="records"),
        "case_tests": analysis.tests.to_dict(orient="records"),
        "friedman": friedman, "rank_stability": stability, "benefit": benefit,
        "tuning": context["tuning"], "environment": context["environment"],
    })


def _benefit_json(key: tuple[str, ...], result: Any, baseline: str | None) -> dict[str, Any]:
    scenario, subset, strategy, region, metric = key
    trend = result.trend
    return {
        "scenario": scenario, "subset": subset, "strategy": strategy, "baseline": baseline,
        "region": region, "metric": metric, "delta": result.margin,
        "slope_per_doubling": None if trend is None else trend.slope.estimate,
        "slope_low": None if trend is None else trend.slope.low,
        "slope_high": None if trend is None else trend.slope.high,
        "slope_p": None if trend is None else trend.p,
        "trend": result.trend_note,
        "n_star": None if result.n_star is None else str(result.n_star),
        "n_star_label": result.n_star_label(),
        "n_star_low": result.n_star_interval[0] or None,
        "n_star_high": result.n_star_interval[1] or None,
        "n_star_bootstrap_shares": result.n_star_shares,
        **_curve_json(result.curve),
        "per_n": result.per_n.to_dict(orient="records")}


def _curve_json(curve: Any) -> dict[str, Any]:
    """The fitted gain curve's crossing of the margin (and its points, as ``curve``)."""
    if curve is None:
        return {"curve_note": "not fitted", "curve_crossing": None, "curve_crossing_low": None,
                "curve_crossing_high": None, "curve_crossing_extrapolated": False, "curve": []}
    return {"curve_note": curve.note, "curve_crossing": curve.crossing,
            "curve_crossing_low": curve.crossing_low, "curve_crossing_high": curve.crossing_high,
            "curve_crossing_extrapolated": curve.crossing_extrapolated,
            "curve": curve.curve.to_dict(orient="records")}


#: The columns of ``tables/tests.csv``: one row per test, seed-level (primary analysis) and
#: case-level (conditional on the trained models).
TEST_COLUMNS = ["scenario", "subset", "N", "region", "metric", "strategy", "baseline", "unit",
                "seeds", "cases", "difference", "ci_low", "ci_high", "p", "p_adjusted",
                "significant", "primary", "var_run", "var_case", "var_residual", "note"]


def tests_table(analysis: Any) -> pd.DataFrame:
    """Every test against the baseline: the run-level tests (``unit`` seed) and the per-case
    tests (``unit`` case, on seed-averaged values: conditional on the trained models)."""
    runs = analysis.run_tests.assign(unit="seed")
    cases = analysis.tests
    if not cases.empty:
        cases = cases[cases["family"] == "baseline"]
        seeds = analysis.summary.set_index(["scenario", "subset", "N", "region", "metric",
                                            "strategy"])["seeds"]
        cases = cases.assign(
            strategy=cases["a"], baseline=cases["b"], unit="case", ci_low=cases["difference_low"],
            ci_high=cases["difference_high"], primary=False,
            note="conditional on the trained models (cases as the unit, seed-averaged values)",
            seeds=[int(seeds.get((r.scenario, r.subset, r.N, r.region, r.metric, r.a), 0))
                   for r in cases.itertuples()])
    frame = pd.concat([f for f in (runs, cases) if not f.empty], ignore_index=True) \
        if not (runs.empty and cases.empty) else pd.DataFrame(columns=TEST_COLUMNS)
    frame = frame.reindex(columns=TEST_COLUMNS)
    order = {"seed": 0, "case": 1}
    return frame.sort_values(["scenario", "subset", "metric", "region", "strategy", "N", "unit"],
                             key=lambda c: c.map(order) if c.name == "unit" else c,
                             kind="stable").reset_index(drop=True)

"""``kdbench report``: from a protocol's complete MLflow runs, or from a tidy per-case table
(:mod:`kdbench.report.inputs`), to ``reports/<name>/<date>_<short-commit>/``.

The folder holds ``index.html`` (jinja2 templates), ``results.json`` (every number, machine
readable: :mod:`kdbench.report.numbers`), ``per_case.csv`` (the tidy table it was computed
from), ``tables/`` (Markdown, LaTeX, CSV) and ``figures/`` (PNG, SVG). It is written beside its
final place and moved there in one rename, so a crash never leaves half a report; rerunning on
the same day and commit replaces that day's report. The same records always give the same
bytes (the date aside).
"""

from __future__ import annotations

import datetime as dt
import json
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
                                primary_endpoint(source), tuple(stats.contrasts)),
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
    from kdbench.report.numbers import flat_tables, results_json
    from kdbench.report.tables import main_tables, subset_tables

    protocol = source.protocol
    analysis.per_case.to_csv(folder / "per_case.csv", index=False, lineterminator="\n")
    tables_dir, figures_dir = folder / "tables", folder / "figures"
    tables = main_tables(analysis)
    subsets = subset_tables(analysis, source.subsets)
    from kdbench.report.provenance import footnoted, undeclared_training_data

    notes = ({} if protocol is None
             else undeclared_training_data(protocol, registry, settings.runs_dir))
    tables, subsets = footnoted(tables, notes), footnoted(subsets, notes)
    for table in tables + subsets:
        table.write(tables_dir)
    results = results_json(analysis, context)
    results["undeclared_training_data"] = notes  # label -> footnote (docs/foundation_teacher.md)
    for name, rows in flat_tables(results).items():
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
                       "contrasts": [r for r in results["contrasts"]
                                     if r["scenario"] == scenario and r["subset"] == subset],
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

"""The report's tables: one formatted frame per table, written as Markdown, LaTeX (booktabs)
and CSV, and handed to the HTML template as header + rows.

Main table (per scenario, subset and metric): strategies × (N, region), each cell the mean over
seeds and test cases and its 95% two-stage bootstrap CI (seeds and cases resampled); the best
mean of each column in bold; ``*`` a significant difference from the baseline in the better
direction and ``†`` in the worse one (the run-level test, seeds as the replicates: a
difference only the per-case test finds is not marked). Subset table (``all``
scenarios, per N and metric): the 15 subsets × (region, strategy), means only, the best of each
row and region in bold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kdbench.report.analysis import Analysis

BETTER, WORSE = "*", "†"


@dataclass(frozen=True)
class Table:
    """One table of the report, in plain text cells with their markers kept apart."""

    name: str
    caption: str
    cells: pd.DataFrame  # strings, no markup
    bold: pd.DataFrame  # booleans, same shape
    marks: pd.DataFrame  # strings ("", "*", "†"), same shape

    def markdown(self) -> str:
        """GitHub Markdown: bold as ``**…**``, marks appended."""
        shown = self.cells.copy()
        for col in shown.columns:
            shown[col] = [(f"**{c}**" if b else c) + m.replace("*", "\\*") for c, b, m in
                          zip(self.cells[col], self.bold[col], self.marks[col], strict=True)]
        shown.columns = [_flat(c) for c in shown.columns]
        return f"**{self.caption}**\n\n{shown.to_markdown()}\n"

    def latex(self) -> str:
        """A booktabs ``table`` environment (pandas' Styler), bold as ``\\textbf``, marks as
        superscripts."""
        shown = self.cells.map(_escape)
        for col in shown.columns:
            shown[col] = [(f"\\textbf{{{c}}}" if b else c) + _latex_mark(m) for c, b, m in
                          zip(shown[col], self.bold[col], self.marks[col], strict=True)]
        styler = shown.style.format_index(escape="latex", axis=0).format_index(
            escape="latex", axis=1)
        return styler.to_latex(hrules=True, caption=_escape(self.caption),
                               label=f"tab:{self.name}", multicol_align="c",
                               environment="table", position_float="centering")

    def header_rows(self) -> tuple[list[list[str]], list[dict[str, object]]]:
        """Header lines and body rows for the HTML template."""
        levels = self.cells.columns.nlevels
        headers = []
        for level in range(levels):
            values = (self.cells.columns.get_level_values(level) if levels > 1
                      else self.cells.columns)
            headers.append([str(v) for v in values])
        rows = []
        for index in self.cells.index:
            rows.append({"label": str(index), "cells": [
                {"text": self.cells.loc[index, col], "bold": bool(self.bold.loc[index, col]),
                 "mark": self.marks.loc[index, col]} for col in self.cells.columns]})
        return headers, rows

    def write(self, folder: Path) -> list[Path]:
        """``<name>.md``, ``<name>.tex`` and ``<name>.csv`` (cells with their markers)."""
        folder.mkdir(parents=True, exist_ok=True)
        md, tex, csv = (folder / f"{self.name}.{ext}" for ext in ("md", "tex", "csv"))
        md.write_text(self.markdown())
        tex.write_text(self.latex())
        plain = self.cells + self.marks
        plain.columns = [_flat(c) for c in plain.columns]
        plain.to_csv(csv, lineterminator="\n")
        return [md, tex, csv]


def _flat(column: object) -> str:
    return " ".join(str(c) for c in column) if isinstance(column, tuple) else str(column)


def _escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                       ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}"),
                       ("α", r"$\alpha$"), ("†", r"$\dagger$"), ("–", "--")):
        text = text.replace(char, repl)
    return text


def _latex_mark(mark: str) -> str:
    return {"": "", BETTER: "$^{*}$", WORSE: r"$^{\dagger}$"}[mark]


def _number(value: float, metric: str) -> str:
    return f"{value:.1f}" if metric.startswith("hd95") else f"{value:.3f}"


def main_tables(analysis: Analysis) -> list[Table]:
    """Per (scenario, subset, metric): strategies × (N, region), mean [95% CI]."""
    tables = []
    summary = analysis.summary
    if summary.empty:
        return tables
    for (scenario, subset, metric), part in summary.groupby(["scenario", "subset", "metric"],
                                                           sort=True):
        sizes = sorted(part["N"].unique())
        regions = [r for r in ("WT", "TC", "ET") if r in set(part["region"])]
        columns = pd.MultiIndex.from_tuples([(f"N={n}", r) for n in sizes for r in regions])
        strategies = [s for s in analysis.strategies if s in set(part["strategy"])]
        cells = pd.DataFrame("–", index=strategies, columns=columns)
        bold = pd.DataFrame(False, index=strategies, columns=columns)
        marks = pd.DataFrame("", index=strategies, columns=columns)
        for row in part.itertuples(index=False):
            col = (f"N={row.N}", row.region)
            cells.loc[row.strategy, col] = (f"{_number(row.mean, metric)} "
                                            f"[{_number(row.low, metric)}, "
                                            f"{_number(row.high, metric)}]")
            bold.loc[row.strategy, col] = bool(row.best)
            if row.significant:
                marks.loc[row.strategy, col] = BETTER if row.better else WORSE
        cells.index.name = bold.index.name = marks.index.name = "strategy"
        baseline = analysis.settings.baseline
        versus = (f"; {BETTER}/{WORSE}: significantly better/worse than {baseline}, seeds as "
                  f"the replicates (run-level t test, α = {analysis.settings.alpha}; primary "
                  f"endpoint as a fixed sequence over N, the rest "
                  f"{analysis.settings.correction} and exploratory)" if baseline else "")
        caption = (f"{metric} on {subset} ({scenario}): mean over seeds and test cases [95% "
                   f"bootstrap CI, seeds and cases resampled]; best per column in bold{versus}")
        tables.append(Table(_name("table", scenario, subset, metric), caption, cells, bold,
                            marks))
    return tables


def subset_tables(analysis: Analysis, scenarios: dict[str, int]) -> list[Table]:
    """For scenarios with several subsets (``available: all``), per (N, metric): subsets ×
    (region, strategy) means, the best of each row and region in bold."""
    tables = []
    summary = analysis.summary
    if summary.empty:
        return tables
    for (scenario, metric, n), part in summary.groupby(["scenario", "metric", "N"], sort=True):
        if scenarios.get(scenario, 1) < 2:
            continue
        higher = analysis.settings.higher_is_better.get(metric, True)
        strategies = [s for s in analysis.strategies if s in set(part["strategy"])]
        regions = [r for r in ("WT", "TC", "ET") if r in set(part["region"])]
        subsets = _in_table_order(set(part["subset"]))
        columns = pd.MultiIndex.from_tuples([(r, s) for r in regions for s in strategies])
        means = part.pivot_table(index="subset", columns=["region", "strategy"],
                                 values="mean").reindex(index=subsets, columns=columns)
        cells = means.map(lambda v, m=metric: "–" if pd.isna(v) else _number(v, m))
        bold = pd.DataFrame(False, index=subsets, columns=columns)
        for region in regions:
            block = means[region]
            best = block.max(axis=1) if higher else block.min(axis=1)
            for strategy in strategies:
                bold[(region, strategy)] = block[strategy].eq(best).to_numpy()
        marks = pd.DataFrame("", index=subsets, columns=columns)
        cells.index.name = bold.index.name = marks.index.name = "available"
        caption = (f"{metric} per available subset ({scenario}, N={n}): mean over test cases; "
                   "best per row and region in bold")
        tables.append(Table(_name("subsets", scenario, metric, f"N{n}"), caption, cells, bold,
                            marks))
    return tables


def _in_table_order(subsets: set[str]) -> list[str]:
    """Fewer modalities first, then canonical order (HeMIS's table order, as
    :func:`kdbench.modalities.all_combinations` lists them)."""
    from kdbench.modalities import all_combinations, label

    order = {label(s): i for i, s in enumerate(all_combinations())}
    return sorted(subsets, key=lambda s: (order.get(s, len(order)), s))


def _name(*parts: object) -> str:
    return "_".join(str(p).replace("+", "-") for p in parts)

"""Every statistic of a report, computed once from the tidy per-case table.

One comparison is one (scenario, subset, N, region, metric). The primary analysis treats the
training runs (seeds) as the replicates (:mod:`kdbench.report.run_level`): each strategy's gain
over the baseline, paired by seed and case, with crossed run and case variance components; the
pre-registered primary endpoint is tested across N as a fixed sequence, everything else is
Holm-corrected per comparison and exploratory. The per-case tests (cases as the unit, each
case's value averaged over seeds: :func:`~kdbench.report.statistics.case_matrix`) are
secondary and conditional on the trained models, as are Friedman/Nemenyi and rank stability
(descriptive: they depend on which strategies are included). The analysis holds plain tables
(pandas) that the writers turn into Markdown, LaTeX, CSV, figures, HTML and JSON; nothing here
formats.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kdbench.report.benefit import Benefit, benefit_vs_n
from kdbench.report.contrasts import contrast_table
from kdbench.report.curves import gain_curve, paired_grids
from kdbench.report.run_level import FEW_SEEDS, fixed_sequence, gain_grid, run_level
from kdbench.report.statistics import (
    Friedman,
    RankStability,
    bootstrap_mean,
    case_matrix,
    friedman,
    pairwise_tests,
    rank_stability,
    seeds_cases,
    two_way_bootstrap_mean,
)

#: The metrics the report analyses, in table order (others stay in the per-case CSV).
REPORTED = ("dice", "hd95")
REGIONS = ("WT", "TC", "ET")
GROUP = ["scenario", "subset", "N", "region", "metric"]


@dataclass(frozen=True)
class Primary:
    """The pre-registered primary endpoint (``statistics.primary``, its subset resolved)."""

    strategy: str
    scenario: str
    subset: str
    region: str
    metric: str

    def matches(self, key: tuple[Any, ...], strategy: str) -> bool:
        """Whether ``strategy`` at comparison ``key`` (GROUP) is the endpoint at some N."""
        scenario, subset, _, region, metric = key
        return (strategy, scenario, subset, region, metric) == (
            self.strategy, self.scenario, self.subset, self.region, self.metric)


@dataclass(frozen=True)
class Settings:
    """The protocol's ``statistics`` section, and the metrics' directions."""

    baseline: str | None
    test: str
    correction: str
    alpha: float
    resamples: int
    higher_is_better: dict[str, bool]
    margin: dict[str, float] = field(default_factory=dict)
    primary: Primary | None = None
    contrasts: tuple[Any, ...] = ()


@dataclass
class Analysis:
    """The report's numbers.

    Attributes:
        per_case: the tidy per-case table (every metric, every seed).
        summary: one row per (scenario, subset, N, region, metric, strategy): mean over cases
            and seeds with its two-stage bootstrap CI (seeds and cases resampled: ``low``,
            ``high``), the CI of the seed-averaged values with cases resampled (``case_low``,
            ``case_high``: conditional on the trained models), ``best`` in its column and the
            run-level test against the baseline.
        run_tests: the run-level test of each strategy against the baseline per comparison
            (unit: seed): GROUP, ``strategy, baseline, seeds, cases, difference`` (mean of
            strategy − baseline) ``ci_low, ci_high, se, df, p, p_adjusted, significant,
            primary``, the variance components and a ``note`` on too few seeds.
        tests: the per-case paired tests of every comparison (:func:`pairwise_tests` rows +
            GROUP), conditional on the trained models.
        friedman: Friedman + Nemenyi per comparison (three strategies or more).
        stability: the bootstrap rank stability per comparison.
        benefit: (scenario, subset, strategy, region, metric) -> its benefit-vs-N analysis.
        contrasts: the pre-registered contrasts (:mod:`kdbench.report.contrasts`), one row per
            contrast and comparison.
    """

    settings: Settings
    per_case: pd.DataFrame
    strategies: list[str]
    summary: pd.DataFrame
    tests: pd.DataFrame
    run_tests: pd.DataFrame = field(default_factory=pd.DataFrame)
    friedman: dict[tuple[Any, ...], Friedman] = field(default_factory=dict)
    stability: dict[tuple[Any, ...], RankStability] = field(default_factory=dict)
    benefit: dict[tuple[str, str, str, str, str], Benefit] = field(default_factory=dict)
    contrasts: pd.DataFrame = field(default_factory=pd.DataFrame)

    def comparisons(self) -> list[tuple[Any, ...]]:
        """Every (scenario, subset, N, region, metric) with results, in report order."""
        keys = self.summary[GROUP].drop_duplicates()
        return [tuple(k) for k in keys.itertuples(index=False)]


def rng_for(*key: Any) -> np.random.Generator:
    """A generator seeded by the comparison it serves: the same numbers however many other
    comparisons a report holds, and in whatever order they run."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def analyse(per_case: pd.DataFrame, settings: Settings, strategies: list[str]) -> Analysis:
    """All statistics of a report (``strategies`` in protocol order)."""
    data = per_case[per_case["metric"].isin(REPORTED)]
    summary_rows: list[dict[str, Any]] = []
    test_tables: list[pd.DataFrame] = []
    run_rows: list[dict[str, Any]] = []
    analysis = Analysis(settings, per_case, strategies, pd.DataFrame(), pd.DataFrame())
    for raw, group in data.groupby(GROUP, sort=True):
        key = tuple(int(k) if isinstance(k, np.integer) else k for k in raw)
        metric = key[-1]
        higher = settings.higher_is_better.get(metric, True)
        present = [s for s in strategies if s in set(group["strategy"])]
        matrix = case_matrix(group, present)
        if matrix.empty:
            continue
        rng = rng_for(*key)
        tests = pairwise_tests(matrix, settings.baseline, higher_is_better=higher,
                               test=settings.test, correction=settings.correction,
                               alpha=settings.alpha, resamples=settings.resamples, rng=rng)
        test_tables.append(tests.assign(**dict(zip(GROUP, key, strict=True))))
        if settings.baseline in present:
            run_rows += _run_rows(group, key, present, settings, higher)
        means = matrix.mean()
        best = means.max() if higher else means.min()
        for strategy in present:
            mine = group[group["strategy"] == strategy]
            ci = bootstrap_mean(matrix[strategy].to_numpy(float), settings.resamples, rng)
            band = two_way_bootstrap_mean(seeds_cases(mine), settings.resamples, rng)
            row = dict(zip(GROUP, key, strict=True))
            row.update(strategy=strategy, cases=int(matrix.shape[0]),
                       seeds=int(mine["seed"].nunique()), mean=ci.estimate, low=band.low,
                       high=band.high, case_low=ci.low, case_high=ci.high,
                       best=bool(np.isclose(means[strategy], best)), p_vs_baseline=None,
                       significant=False, better=None)
            summary_rows.append(row)
        result = friedman(matrix, higher_is_better=higher, alpha=settings.alpha)
        if result is not None:
            analysis.friedman[key] = result
        if matrix.shape[1] > 1:
            analysis.stability[key] = rank_stability(matrix, higher_is_better=higher,
                                                     resamples=settings.resamples, rng=rng)
    analysis.run_tests = _adjust_run_tests(pd.DataFrame(run_rows, columns=RUN_TEST_COLUMNS),
                                           settings)
    analysis.summary = _with_run_tests(pd.DataFrame(summary_rows), analysis.run_tests, settings)
    analysis.tests = (pd.concat(test_tables, ignore_index=True) if test_tables
                      else pd.DataFrame())
    if settings.baseline is not None:
        analysis.benefit = _benefits(data, settings, strategies)
    analysis.contrasts = contrast_table(data, settings.contrasts,
                                        higher_is_better=settings.higher_is_better,
                                        margin=settings.margin, alpha=settings.alpha)
    return analysis


RUN_TEST_COLUMNS = [*GROUP, "strategy", "baseline", "seeds", "cases", "difference", "ci_low",
                    "ci_high", "se", "df", "p", "p_adjusted", "significant", "better",
                    "primary", "var_run", "var_case", "var_residual", "note"]


def _run_rows(group: pd.DataFrame, key: tuple[Any, ...], present: list[str],
              settings: Settings, higher: bool) -> list[dict[str, Any]]:
    """The run-level test of every strategy against the baseline at one comparison."""
    rows = []
    sign = 1.0 if higher else -1.0  # gains are improvements; differences strategy − baseline
    for strategy in present:
        if strategy == settings.baseline:
            continue
        grid = gain_grid(group, strategy, settings.baseline, higher_is_better=higher)
        result = run_level(grid.to_numpy(float))
        low, high = sorted((sign * result.ci.low, sign * result.ci.high))
        parts = result.components
        rows.append({**dict(zip(GROUP, key, strict=True)), "strategy": strategy,
                     "baseline": settings.baseline, "seeds": result.seeds,
                     "cases": result.cases, "difference": sign * result.gain, "ci_low": low,
                     "ci_high": high, "se": result.se, "df": result.df, "p": result.p,
                     "better": bool(result.gain > 0),
                     "primary": bool(settings.primary is not None
                                     and settings.primary.matches(key, strategy)),
                     "var_run": None if parts is None else parts.run,
                     "var_case": None if parts is None else parts.case,
                     "var_residual": None if parts is None else parts.residual,
                     "note": result.note})
    return rows


def _adjust_run_tests(tests: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Adjusted p-values: the primary endpoint's tests as a fixed sequence from the smallest N
    up; every other test Holm-corrected (``settings.correction``) with the other strategies of
    its comparison (exploratory). Significant: adjusted p below α, with at least
    :data:`~kdbench.report.run_level.FEW_SEEDS` seeds."""
    from kdbench.report.statistics import adjust

    if tests.empty:
        return tests.assign(p_adjusted=pd.Series(dtype=float),
                            significant=pd.Series(dtype=bool))
    tests = tests.copy()
    tests["p_adjusted"] = np.nan
    primary = tests[tests["primary"]].sort_values("N")
    tests.loc[primary.index, "p_adjusted"] = fixed_sequence(primary["p"].tolist())
    secondary = tests[~tests["primary"]]
    for _, family in secondary.groupby(GROUP, sort=False):
        tests.loc[family.index, "p_adjusted"] = adjust(family["p"].tolist(),
                                                       settings.correction, settings.alpha)
    # below FEW_SEEDS seeds nothing is claimed (the row's note says why)
    tests["significant"] = (tests["p_adjusted"] < settings.alpha) & (tests["seeds"] >= FEW_SEEDS)
    return tests


def _with_run_tests(summary: pd.DataFrame, tests: pd.DataFrame, settings: Settings
                    ) -> pd.DataFrame:
    """The summary's test columns from the run-level tests (the stars of the tables)."""
    if summary.empty or tests.empty:
        return summary
    found = tests.set_index([*GROUP, "strategy"])
    for i, row in summary.iterrows():
        index = (*(row[c] for c in GROUP), row["strategy"])
        if index in found.index:
            test = found.loc[index]
            summary.at[i, "p_vs_baseline"] = float(test["p_adjusted"])
            summary.at[i, "significant"] = bool(test["significant"])
            summary.at[i, "better"] = bool(test["better"])
    return summary


def _benefits(data: pd.DataFrame, settings: Settings, strategies: list[str]
              ) -> dict[tuple[str, str, str, str, str], Benefit]:
    """The benefit-vs-N analysis of every strategy, region and reported metric."""
    out = {}
    for (scenario, subset, region, metric), group in data.groupby(
            ["scenario", "subset", "region", "metric"], sort=True):
        higher = settings.higher_is_better.get(metric, True)
        for strategy in strategies:
            if strategy == settings.baseline or strategy not in set(group["strategy"]):
                continue
            grids = {int(n): gain_grid(part, strategy, settings.baseline,
                                       higher_is_better=higher)
                     for n, part in group.groupby("N", sort=True)}
            grids = {n: g for n, g in grids.items() if not g.empty}
            if not grids:
                continue
            key = (scenario, subset, strategy, region, metric)
            out[key] = benefit_vs_n(grids, margin=settings.margin.get(metric),
                                    alpha=settings.alpha, resamples=settings.resamples,
                                    rng=rng_for("benefit", *key))
            out[key].curve = gain_curve(paired_grids(group, strategy, settings.baseline),
                                        higher_is_better=higher,
                                        margin=settings.margin.get(metric),
                                        resamples=settings.resamples,
                                        rng=rng_for("curve", *key))
    return out

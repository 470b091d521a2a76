"""Every statistic of a report, computed once from the tidy per-case table.

One comparison is one (scenario, subset, N, region, metric); per comparison the strategies'
per-case values are averaged over seeds and restricted to the cases all of them have
(:func:`~kdbench.report.statistics.case_matrix`). The analysis holds plain tables (pandas) that
the writers turn into Markdown, LaTeX, CSV, figures, HTML and JSON; nothing here formats.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kdbench.report.benefit import Benefit, benefit_vs_n
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
class Settings:
    """The protocol's ``statistics`` section, and the metrics' directions."""

    baseline: str | None
    test: str
    correction: str
    alpha: float
    resamples: int
    higher_is_better: dict[str, bool]


@dataclass
class Analysis:
    """The report's numbers.

    Attributes:
        per_case: the tidy per-case table (every metric, every seed).
        summary: one row per (scenario, subset, N, region, metric, strategy): mean over cases of
            the seed-averaged values with its bootstrap CI (cases resampled), the two-way CI
            (seeds and cases resampled: the learning curves' band), ``best`` in its column and
            the paired test against the baseline.
        tests: the paired tests of every comparison (:func:`pairwise_tests` rows + GROUP).
        friedman: Friedman + Nemenyi per comparison (three strategies or more).
        stability: the bootstrap rank stability per comparison.
        benefit: (scenario, subset, strategy, region) -> its benefit-vs-N analysis (Dice).
    """

    settings: Settings
    per_case: pd.DataFrame
    strategies: list[str]
    summary: pd.DataFrame
    tests: pd.DataFrame
    friedman: dict[tuple[Any, ...], Friedman] = field(default_factory=dict)
    stability: dict[tuple[Any, ...], RankStability] = field(default_factory=dict)
    benefit: dict[tuple[str, str, str, str], Benefit] = field(default_factory=dict)

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
        versus = tests[tests["family"] == "baseline"].set_index("a")
        means = matrix.mean()
        best = means.max() if higher else means.min()
        for strategy in present:
            ci = bootstrap_mean(matrix[strategy].to_numpy(float), settings.resamples, rng)
            band = two_way_bootstrap_mean(seeds_cases(group[group["strategy"] == strategy]),
                                          settings.resamples, rng)
            row = dict(zip(GROUP, key, strict=True))
            row.update(strategy=strategy, cases=int(matrix.shape[0]),
                       seeds=int(group.loc[group["strategy"] == strategy, "seed"].nunique()),
                       mean=ci.estimate, low=ci.low, high=ci.high, band_low=band.low,
                       band_high=band.high, best=bool(np.isclose(means[strategy], best)),
                       p_vs_baseline=None, significant=False, better=None)
            if strategy in versus.index:
                test = versus.loc[strategy]
                row.update(p_vs_baseline=float(test["p_adjusted"]),
                           significant=bool(test["significant"]), better=bool(test["better"]))
            summary_rows.append(row)
        result = friedman(matrix, higher_is_better=higher, alpha=settings.alpha)
        if result is not None:
            analysis.friedman[key] = result
        if matrix.shape[1] > 1:
            analysis.stability[key] = rank_stability(matrix, higher_is_better=higher,
                                                     resamples=settings.resamples, rng=rng)
    analysis.summary = pd.DataFrame(summary_rows)
    analysis.tests = (pd.concat(test_tables, ignore_index=True) if test_tables
                      else pd.DataFrame())
    if settings.baseline is not None:
        analysis.benefit = _benefits(data, settings, strategies)
    return analysis


def paired_gains(per_case: pd.DataFrame, strategy: str, baseline: str) -> pd.DataFrame:
    """Rows ``case, N, gain``: strategy − baseline per case, paired by seed (seeds where both
    ran), then averaged over those seeds."""
    mine = per_case[per_case["strategy"] == strategy]
    base = per_case[per_case["strategy"] == baseline]
    both = mine.merge(base, on=["N", "seed", "case"], suffixes=("", "_base"))
    both["gain"] = both["value"] - both["value_base"]
    return both.groupby(["case", "N"], as_index=False)["gain"].mean()


def _benefits(data: pd.DataFrame, settings: Settings, strategies: list[str]
              ) -> dict[tuple[str, str, str, str], Benefit]:
    out = {}
    dice = data[data["metric"] == "dice"]
    for (scenario, subset, region), group in dice.groupby(["scenario", "subset", "region"]):
        for strategy in strategies:
            if strategy == settings.baseline or strategy not in set(group["strategy"]):
                continue
            gains = paired_gains(group, strategy, settings.baseline)
            if gains.empty:
                continue
            key = (scenario, subset, strategy, region)
            out[key] = benefit_vs_n(gains, alpha=settings.alpha, resamples=settings.resamples,
                                    rng=rng_for("benefit", *key))
    return out

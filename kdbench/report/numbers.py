"""The report's numbers as plain records: ``results.json`` and the long-form CSV files of
``tables/`` (one list of rows each), nothing formatted for reading."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd


def flat_tables(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
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
              "gain_curves": curves, "contrasts": results["contrasts"]}
    if results["tuning"]:
        tables["tuning"] = [{k: v for k, v in r.items() if k != "best_params"}
                            | {f"best_{k}": v for k, v in r["best_params"].items()}
                            for r in results["tuning"]]
    return tables


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
                       else dataclasses.asdict(settings.primary),
                       "contrasts": [c.model_dump() for c in settings.contrasts]},
        "strategies": analysis.strategies,
        "summary": analysis.summary.to_dict(orient="records"),
        "tests": tests_table(analysis).to_dict(orient="records"),
        "case_tests": analysis.tests.to_dict(orient="records"),
        "contrasts": analysis.contrasts.to_dict(orient="records"),
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

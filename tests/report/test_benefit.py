"""Benefit vs N on records with known effects: a strategy with a true +0.05 Dice gain that
vanishes above N = 400, another with none."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from kdbench.report.analysis import Settings, analyse, paired_gains
from kdbench.report.benefit import benefit_vs_n, n_star

SIZES = [25, 50, 100, 200, 400, 800, 1600]
SETTINGS = Settings("mono", "wilcoxon", "holm", 0.05, 400, {"dice": True, "hd95": False})


def known_effects(cases: int = 40, seeds: int = 3, seed: int = 7) -> pd.DataFrame:
    """Tidy per-case rows: Dice of mono (rising with N), ``helpful`` = mono + 0.05 up to
    N = 400 and + 0 above, ``neutral`` = mono + 0; case difficulty, per-seed noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 0.08, cases)
    rows = []
    for n in SIZES:
        level = 0.55 + 0.05 * np.log2(n / 25)
        for s in range(seeds):
            for strategy, gain in (("mono", 0.0), ("helpful", 0.05 if n <= 400 else 0.0),
                                   ("neutral", 0.0)):
                noise = rng.normal(0, 0.04, cases)
                for c in range(cases):
                    rows.append({"strategy": strategy, "N": n, "seed": s,
                                 "scenario": "t1ce_only", "subset": "t1ce", "case": f"c{c:02d}",
                                 "region": "WT", "metric": "dice",
                                 "value": level + difficulty[c] + gain + noise[c],
                                 "run_id": f"r{n}{s}{strategy}", "job_id": f"j{n}{s}{strategy}"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def analysis():
    return analyse(known_effects(), SETTINGS, ["mono", "helpful", "neutral"])


def test_paired_tests_detect_the_true_gain_only(analysis):
    versus = analysis.tests[analysis.tests["family"] == "baseline"]
    helpful = versus[versus["a"] == "helpful"].set_index("N")
    neutral = versus[versus["a"] == "neutral"].set_index("N")
    assert helpful.loc[[25, 50, 100, 200, 400], "significant"].all()
    assert helpful.loc[[25, 50, 100, 200, 400], "better"].all()
    assert not helpful.loc[[800, 1600], "significant"].any()
    # no gain found for the neutral strategy (at α = 0.05 over 7 N, a chance difference may
    # appear in either direction; it is never a significant gain, and at most once)
    assert not (neutral["significant"] & neutral["better"]).any()
    assert neutral["significant"].sum() <= 1
    assert helpful.loc[100, "difference"] == pytest.approx(0.05, abs=0.02)


def test_n_star_lands_where_the_gain_vanishes(analysis):
    helpful = analysis.benefit[("t1ce_only", "t1ce", "helpful", "WT")]
    assert (helpful.n_star_after, helpful.n_star) == (400, 800)
    assert helpful.n_star_label() == "(400, 800]"
    assert helpful.n_star_shares["800"] > 0.8  # most resamples agree
    assert helpful.n_star_shares["400"] == 0.0  # none puts the end of the gain before 400
    order = [str(n) for n in SIZES] + ["beyond"]
    low, high = (order.index(x) for x in helpful.n_star_interval)
    assert low <= order.index("800") <= high
    # the trend: the gain falls with N, significantly
    assert helpful.slope.high < 0 and helpful.slope_p < 0.05
    # the log-linear model smears the step: its N* is past 400 (here past the grid: None)
    assert helpful.n_star_model is None or helpful.n_star_model > 400

    neutral = analysis.benefit[("t1ce_only", "t1ce", "neutral", "WT")]
    assert neutral.n_star == 25 and neutral.n_star_after is None
    assert neutral.n_star_label() == "≤ 25"
    assert neutral.slope.low < 0 < neutral.slope.high


def test_the_trend_is_statsmodels_mixedlm_on_the_gains(analysis):
    data = analysis.per_case
    gains = paired_gains(data, "helpful", "mono")
    gains["log2_n"] = np.log2(gains["N"].astype(float))
    direct = smf.mixedlm("gain ~ log2_n", gains, groups=gains["case"]).fit(reml=True)
    helpful = analysis.benefit[("t1ce_only", "t1ce", "helpful", "WT")]
    assert helpful.slope.estimate == pytest.approx(direct.fe_params["log2_n"], rel=1e-6)
    low, high = direct.conf_int().loc["log2_n"]
    assert (helpful.slope.low, helpful.slope.high) == (pytest.approx(low, rel=1e-4),
                                                       pytest.approx(high, rel=1e-4))
    # the per-seed pairing: gains are the mean over seeds of (strategy - baseline) per case
    one = data[(data["N"] == 25) & (data["case"] == "c03")]
    expected = (one[one["strategy"] == "helpful"]["value"].to_numpy()
                - one[one["strategy"] == "mono"]["value"].to_numpy()).mean()
    got = gains[(gains["N"] == 25) & (gains["case"] == "c03")]["gain"].iloc[0]
    assert got == pytest.approx(expected)


def test_n_star_rule():
    assert n_star([True, True, False, False], [1, 2, 3, 4]) == (3, 2)
    assert n_star([True, False, True, False], [1, 2, 3, 4]) == (4, 3)  # last significant wins
    assert n_star([True, True], [1, 2]) == (None, 2)
    assert n_star([False, False], [1, 2]) == (1, None)


def test_a_gain_still_significant_at_the_largest_n():
    rng = np.random.default_rng(0)
    gains = pd.DataFrame([{"case": f"c{c}", "N": n, "gain": 0.05 + rng.normal(0, 0.02)}
                          for n in (10, 20, 40) for c in range(30)])
    result = benefit_vs_n(gains, alpha=0.05, resamples=200, rng=np.random.default_rng(0))
    assert result.n_star is None and result.n_star_label() == "> 40"
    assert result.n_star_shares["beyond"] > 0.9


def test_same_records_same_numbers():
    first = analyse(known_effects(cases=12, seeds=2), SETTINGS, ["mono", "helpful", "neutral"])
    again = analyse(known_effects(cases=12, seeds=2).sample(frac=1, random_state=3), SETTINGS,
                    ["mono", "helpful", "neutral"])
    pd.testing.assert_frame_equal(first.summary, again.summary)
    pd.testing.assert_frame_equal(first.tests, again.tests)

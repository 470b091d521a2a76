"""Run-level inference, checked by simulation against the truth it was simulated from (issue
22's acceptance lines) and against independent references (scipy's paired t test,
statsmodels' ANOVA-free mixed model is not needed: the balanced closed forms are checked
against their definitions)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdbench.report.run_level import (
    BEYOND,
    FADED,
    FEW_SEEDS,
    bootstrap_n_star,
    components,
    fixed_sequence,
    gain_grid,
    n_star,
    n_star_label,
    run_level,
    trend,
)

ALPHA = 0.05


def simulate_values(rng, *, gain, seeds, cases, run_sd=0.02, case_sd=0.1, residual=0.05,
                    interaction=0.0):
    """Per-case values of a strategy and a baseline: a case effect both share, a run effect
    per strategy and seed, a strategy × case interaction, residual noise. Returns the
    strategy's and the baseline's seeds × cases values."""
    case = rng.normal(0, case_sd, cases)
    base = 0.8 + case + rng.normal(0, run_sd, (seeds, 1)) + rng.normal(0, residual,
                                                                        (seeds, cases))
    mine = (0.8 + gain + case + rng.normal(0, interaction, cases)
            + rng.normal(0, run_sd, (seeds, 1)) + rng.normal(0, residual, (seeds, cases)))
    return mine, base


def simulated_grid(rng, **kwargs):
    """The cases × seeds gain grid (the strategy minus the baseline)."""
    mine, base = simulate_values(rng, **kwargs)
    return (mine - base).T


def test_gain_grid_pairs_by_seed_and_case_and_orients_by_direction():
    rows = []
    for strategy, shift in (("kd", 0.1), ("mono", 0.0)):
        for seed in (0, 1):
            for case in ("a", "b", "c"):
                if strategy == "kd" and seed == 1 and case == "c":
                    continue  # a missing case drops that case from the balanced grid
                rows.append({"strategy": strategy, "seed": seed, "case": case,
                             "value": shift + seed * 0.01 + ord(case) * 0.001})
    frame = pd.DataFrame(rows)
    grid = gain_grid(frame, "kd", "mono")
    assert list(grid.index) == ["a", "b"] and list(grid.columns) == [0, 1]
    assert np.allclose(grid.to_numpy(), 0.1)
    assert np.allclose(gain_grid(frame, "kd", "mono", higher_is_better=False).to_numpy(), -0.1)


def test_components_and_standard_error_match_their_definitions():
    rng = np.random.default_rng(0)
    grid = simulated_grid(rng, gain=0.01, seeds=6, cases=40, interaction=0.03)
    found, (ms_seed, ms_case, ms_res) = components(grid)
    # the mean squares of the two-way layout, from statsmodels' ANOVA of the same grid
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    long = pd.DataFrame([{"d": grid[c, s], "case": f"c{c}", "seed": f"s{s}"}
                         for c in range(grid.shape[0]) for s in range(grid.shape[1])])
    table = sm.stats.anova_lm(smf.ols("d ~ C(case) + C(seed)", long).fit())
    assert ms_seed == pytest.approx(table.loc["C(seed)", "mean_sq"])
    assert ms_case == pytest.approx(table.loc["C(case)", "mean_sq"])
    assert ms_res == pytest.approx(table.loc["Residual", "mean_sq"])
    assert found.case == pytest.approx((ms_case - ms_res) / 6)
    # without case variance the estimate is the paired t test of the seed means (seeds as
    # the replicates)
    flat = simulated_grid(rng, gain=0.01, seeds=5, cases=1)
    result = run_level(flat)
    seed_means = flat[0]
    reference = stats.ttest_1samp(seed_means, 0.0)
    assert result.p == pytest.approx(reference.pvalue)
    assert result.df == 4


def test_few_seeds_are_said_plainly():
    rng = np.random.default_rng(1)
    one = run_level(simulated_grid(rng, gain=0.05, seeds=1, cases=20))
    assert one.p == 1.0 and one.df == 0 and "one seed" in one.note
    assert one.state(0.02, ALPHA) == "undetermined"
    two = run_level(simulated_grid(rng, gain=0.05, seeds=2, cases=20))
    assert FEW_SEEDS == 3 and "cannot support a claim" in two.note
    assert not two.enough_seeds and two.state(0.02, ALPHA) == "undetermined"  # even if p < α
    assert run_level(simulated_grid(rng, gain=0.05, seeds=5, cases=20)).note == ""


@pytest.mark.parametrize("cases", [100, 250])
def test_null_rejection_rate_and_coverage(cases):
    """200 simulated benchmarks, zero true gain, 5 seeds: the run-level test rejects in at
    most 7 %, its 95 % CI covers the truth in at least 92 %; the per-case Wilcoxon on
    seed-averaged values (conditional on the trained models) rejects far more often."""
    rng = np.random.default_rng(cases)
    rejected = covered = conditional = 0
    for _ in range(200):
        grid = simulated_grid(rng, gain=0.0, seeds=5, cases=cases)
        result = run_level(grid)
        rejected += result.p < ALPHA
        covered += result.ci.low <= 0.0 <= result.ci.high
        conditional += stats.wilcoxon(grid.mean(axis=1)).pvalue < ALPHA
    assert rejected / 200 <= 0.07
    assert covered / 200 >= 0.92
    assert conditional / 200 > 0.3  # what the per-case test does with a run effect


def test_coverage_with_a_true_gain_and_case_interaction():
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(200):
        result = run_level(simulated_grid(rng, gain=0.03, seeds=5, cases=100,
                                          interaction=0.05))
        covered += result.ci.low <= 0.03 <= result.ci.high
    assert covered / 200 >= 0.92


def test_trend_slope_covers_the_truth():
    """Gain linear in log2 N (slope 0.01 per doubling), 5 seeds, 100 cases, six sizes."""
    rng = np.random.default_rng(3)
    sizes = [25, 50, 100, 200, 400, 800]
    covered = rejected_null = 0
    for _ in range(200):
        grids = {n: simulated_grid(rng, gain=0.05 - 0.01 * np.log2(n / 25), seeds=5,
                                   cases=100) for n in sizes}
        result = trend(grids)
        covered += result.slope.low <= -0.01 <= result.slope.high
        flat = trend({n: simulated_grid(rng, gain=0.0, seeds=5, cases=100) for n in sizes})
        rejected_null += flat.p < ALPHA
    assert covered / 200 >= 0.92
    assert rejected_null / 200 <= 0.07


CROSSING = {25: 0.04, 50: 0.03, 100: 0.015, 200: 0.0, 400: 0.0, 800: 0.0}


def crossing_grids(rng, cases):
    """Issue 22's known crossing: the gain fades by N = 200; run-to-run spread shrinks with N
    (run sd 0.03 sqrt(25 / N)); 10 seeds."""
    return {n: simulated_grid(rng, gain=g, seeds=10, cases=cases,
                              run_sd=0.03 * np.sqrt(25 / n)) for n, g in CROSSING.items()}


def crossing_n_stars(cases, benchmarks=200, seed=11):
    rng = np.random.default_rng(seed)
    sizes = sorted(CROSSING)
    found = []
    for _ in range(benchmarks):
        grids = crossing_grids(rng, cases)
        found.append(n_star([run_level(grids[n]).state(0.02, ALPHA) for n in sizes], sizes))
    return found


def test_known_crossing_is_found_and_does_not_drift_with_more_cases():
    with_100 = crossing_n_stars(100)
    assert np.mean([s in (100, 200) for s in with_100]) >= 0.80
    assert np.mean([s == BEYOND for s in with_100]) <= 0.05
    with_1000 = crossing_n_stars(1000, benchmarks=100, seed=12)
    assert np.mean([s in (100, 200) for s in with_1000]) >= 0.80
    # more test cases do not move N* right (it measures the fade, not the power)
    later = np.mean([s == BEYOND or s > 200 for s in with_1000])
    assert later <= np.mean([s == BEYOND or s > 200 for s in with_100]) + 0.05


def test_n_star_and_its_bootstrap_interval():
    sizes = [25, 50, 100]
    assert n_star(["benefit", FADED, FADED], sizes) == 50
    assert n_star([FADED, "undetermined", FADED], sizes) == 100
    assert n_star([FADED] * 3, sizes) == 25 and n_star_label(25, sizes) == "<=25"
    assert n_star([FADED, FADED, "undetermined"], sizes) == BEYOND
    rng = np.random.default_rng(5)
    grids = crossing_grids(rng, 100)
    shares, interval = bootstrap_n_star(grids, 0.02, ALPHA, 200, np.random.default_rng(0))
    assert sum(shares.values()) == pytest.approx(1.0)
    assert interval[0] in shares and interval[1] in shares
    assert shares["200"] + shares["100"] > 0.5


def test_fixed_sequence_adjusts_by_the_running_maximum():
    assert fixed_sequence([0.01, 0.03, 0.02, 0.2, 0.01]) == [0.01, 0.03, 0.03, 0.2, 0.2]

"""Learning curves as models: the power law recovers known parameters, the gain curve finds
where a known gain enters the margin, and an extrapolated crossing is labelled."""

import numpy as np
import pytest

from kdbench.report.curves import MIN_SIZES, fit_curve, gain_curve, power_law

SIZES = [25, 50, 100, 200, 400, 800]


def test_fit_recovers_a_known_curve():
    x = np.asarray(SIZES, dtype=float)
    truth = (0.85, -0.3, 0.6)
    y = power_law(x / x.min(), *truth)
    a, b, c = fit_curve(x, y)
    assert (a, b, c) == (pytest.approx(0.85, abs=1e-4), pytest.approx(-0.3, abs=1e-4),
                         pytest.approx(0.6, abs=1e-3))


def _grids(rng, gain_of_n, sizes, seeds=8, cases=60, run_sd=0.004, noise=0.02):
    """Baseline Dice 0.85 − 0.3 (N/25)^−0.6; the strategy's curve adds gain_of_n(N); each run
    its own shift, each case its difficulty (shared) and noise."""
    case = rng.normal(0, 0.08, cases)
    grids = {}
    for n in sizes:
        level = float(power_law(np.asarray(n / 25.0), 0.85, -0.3, 0.6))
        base = level + case[:, None] + rng.normal(0, run_sd, seeds) + rng.normal(
            0, noise, (cases, seeds))
        mine = level + gain_of_n(n) + case[:, None] + rng.normal(0, run_sd, seeds) + \
            rng.normal(0, noise, (cases, seeds))
        grids[n] = (mine, base)
    return grids


def test_the_gain_curve_enters_the_margin_where_the_true_gain_does():
    # true gain 0.1 (N/25)^-0.5: 0.1 at 25, 0.025 at 400, at most δ = 0.02 from N = 625
    gain = lambda n: 0.1 * (n / 25.0) ** -0.5  # noqa: E731
    rng = np.random.default_rng(0)
    result = gain_curve(_grids(rng, gain, SIZES), higher_is_better=True, margin=0.02,
                        resamples=100, rng=np.random.default_rng(1))
    # a crossing where the gain is as small as δ is fragile: the curve puts it near 625 and
    # its interval covers it (20 of 20 simulated data sets of this size when written)
    assert result.crossing == pytest.approx(625, rel=0.35)
    assert result.crossing_low <= 625 <= result.crossing_high
    assert not result.crossing_extrapolated  # 625 is inside the grid (largest 800)
    measured = result.curve[~result.curve["extrapolated"]]
    truth = gain(measured["N"].to_numpy())
    assert np.all(np.abs(measured["gain"].to_numpy() - truth) < 0.015)
    assert (result.curve["low"] <= result.curve["high"]).all()


def test_a_crossing_beyond_the_grid_is_labelled_an_extrapolation():
    gain = lambda n: 0.1 * (n / 25.0) ** -0.5  # noqa: E731 (at most 0.02 from N = 625)
    rng = np.random.default_rng(2)
    result = gain_curve(_grids(rng, gain, [25, 50, 100, 200]), higher_is_better=True,
                        margin=0.02, resamples=50, rng=np.random.default_rng(3))
    assert result.crossing is not None and result.crossing > 200
    assert result.crossing_extrapolated and result.largest == 200
    assert result.curve["extrapolated"].any() and "extrapolated" in result.note


def test_too_few_sizes_fit_nothing_and_say_why():
    rng = np.random.default_rng(4)
    result = gain_curve(_grids(rng, lambda n: 0.05, [25, 50, 100]), higher_is_better=True,
                        margin=0.02, resamples=10, rng=rng)
    assert result.curve.empty and result.crossing is None
    assert f"needs at least {MIN_SIZES}" in result.note


def test_lower_is_better_metrics_are_oriented():
    rng = np.random.default_rng(5)
    grids = {n: (-mine, -base) for n, (mine, base) in
             _grids(rng, lambda n: 0.05, SIZES).items()}  # an HD95-like metric: lower better
    result = gain_curve(grids, higher_is_better=False, margin=0.02, resamples=20, rng=rng)
    assert result.curve[~result.curve["extrapolated"]]["gain"].mean() == pytest.approx(
        0.05, abs=0.01)

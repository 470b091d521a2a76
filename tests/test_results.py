"""The tables `kdbench run` prints: means over seeds and gains paired by seed."""

from __future__ import annotations

import pandas as pd
import pytest

from kdbench.results import gain_table, mean_dice_table


def _frame(rows):
    rows = [(r[0], "t1ce", *r[1:]) for r in rows]
    return pd.DataFrame(rows, columns=["scenario", "subset", "strategy", "N", "seed", "WT", "TC",
                                       "ET"])


def test_means_and_paired_gains_by_hand():
    per_seed = _frame([
        ("t1ce", "mono", 4, 0, 0.40, 0.50, 0.60),
        ("t1ce", "mono", 4, 1, 0.50, 0.30, 0.70),
        ("t1ce", "kd", 4, 0, 0.45, 0.50, 0.55),
        ("t1ce", "kd", 4, 1, 0.60, 0.40, 0.70),
        ("t1ce", "multi", 4, 0, 0.70, 0.60, 0.65),
        # seed 2 of kd has no mono partner: it counts in the mean, not in the gain
        ("t1ce", "kd", 4, 2, 0.10, 0.10, 0.10),
        ("t1ce", "mono", 8, 0, 0.55, 0.55, 0.55),
        ("t1ce", "kd", 8, 0, 0.50, 0.60, 0.55),
    ])
    means = mean_dice_table(per_seed).set_index(["strategy", "N"])
    assert means.loc[("kd", 4), "seeds"] == 3
    assert means.loc[("kd", 4), "WT"] == pytest.approx((0.45 + 0.60 + 0.10) / 3)
    assert means.loc[("mono", 4), "TC"] == pytest.approx(0.40)

    gains = gain_table(per_seed, "mono").set_index(["strategy", "N"])
    assert sorted(gains.index) == [("kd", 4), ("kd", 8), ("multi", 4)]
    assert gains.loc[("kd", 4), "pairs"] == 2
    # seed 0: +0.05, seed 1: +0.10 -> +0.075; TC: 0 and +0.10 -> +0.05; ET: -0.05 and 0
    assert gains.loc[("kd", 4), ["WT", "TC", "ET"]].tolist() == pytest.approx([0.075, 0.05,
                                                                               -0.025])
    assert gains.loc[("multi", 4), "pairs"] == 1
    assert gains.loc[("multi", 4), "WT"] == pytest.approx(0.30)
    assert gains.loc[("kd", 8), ["WT", "TC", "ET"]].tolist() == pytest.approx([-0.05, 0.05, 0])


def test_no_baseline_run_gives_an_empty_gain_table():
    per_seed = _frame([("t1ce", "kd", 4, 0, 0.4, 0.4, 0.4)])
    assert gain_table(per_seed, "mono").empty
    assert mean_dice_table(_frame([])).empty

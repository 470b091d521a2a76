"""Pre-registered contrasts (statistics.contrasts): strategy − control with seeds as the
replicates, against independent references, and in a report (issue 23: the privileged-effect
table)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli
from scipy import stats

from kdbench.report.contrasts import contrast_table

PRIVILEGED = SimpleNamespace(name="privileged", strategy="kd", control="kd_born_again")


def _rows(effects, seeds=5, cases=8, noise=0.01, seed_noise=0.01, metric="dice"):
    """Per-case rows: strategy -> region -> its mean effect on a shared case difficulty."""
    rng = np.random.default_rng(7)
    difficulty = rng.normal(0.7, 0.1, cases)
    rows = []
    for seed in range(seeds):
        run = {s: rng.normal(0, seed_noise) for s in effects}
        for strategy, by_region in effects.items():
            for region, effect in by_region.items():
                for c in range(cases):
                    rows.append({"scenario": "t1ce_only", "subset": "t1ce", "N": 4,
                                 "region": region, "metric": metric, "strategy": strategy,
                                 "seed": seed, "case": f"c{c}",
                                 "value": difficulty[c] + effect + run[strategy]
                                 + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def test_one_case_per_seed_is_the_paired_t_test_of_the_seeds():
    """With one test case the run-level test is the paired t test of the per-seed values:
    scipy's ttest_rel is the reference."""
    table = _rows({"kd": {"WT": 0.03}, "kd_born_again": {"WT": 0.0}}, seeds=6, cases=1,
                  seed_noise=0.02)
    out = contrast_table(table, [PRIVILEGED], higher_is_better={"dice": True},
                         margin={}, alpha=0.05)
    (row,) = out.to_dict(orient="records")
    a = table[table.strategy == "kd"].sort_values("seed")["value"].to_numpy()
    b = table[table.strategy == "kd_born_again"].sort_values("seed")["value"].to_numpy()
    reference = stats.ttest_rel(a, b)
    half = stats.t.ppf(0.975, 5) * np.std(a - b, ddof=1) / np.sqrt(6)
    assert row["difference"] == pytest.approx(np.mean(a - b))
    assert row["p"] == pytest.approx(reference.pvalue, rel=1e-9)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        (np.mean(a - b) - half, np.mean(a - b) + half))
    assert (row["seeds"], row["cases"], row["df"]) == (6, 1, 5.0)
    assert row["state"] == ""  # no margin, no state


def test_states_against_the_margin_and_direction_of_a_lower_is_better_metric():
    effects = {"kd": {"WT": 0.10, "TC": 0.0, "ET": -0.10},
               "kd_born_again": {"WT": 0.0, "TC": 0.0, "ET": 0.0}}
    out = contrast_table(_rows(effects, seed_noise=0.004), [PRIVILEGED],
                         higher_is_better={"dice": True}, margin={"dice": 0.02},
                         alpha=0.05).set_index("region")
    assert out.loc["WT", "state"] == "above δ" and out.loc["WT", "difference"] == \
        pytest.approx(0.10, abs=0.02)
    assert out.loc["TC", "state"] == "within ±δ"
    assert out.loc["ET", "state"] == "below −δ"
    assert (out["ci_low"] < out["difference"]).all() and (out["difference"] < out["ci_high"]).all()
    # HD95: lower is better; the difference stays strategy − control in millimetres, the
    # state reads the improvement
    hd = contrast_table(_rows({"kd": {"WT": -5.0}, "kd_born_again": {"WT": 0.0}},
                              metric="hd95"), [PRIVILEGED],
                        higher_is_better={"hd95": False}, margin={"hd95": 2.0}, alpha=0.05)
    assert hd.loc[0, "difference"] == pytest.approx(-5.0, abs=0.1)
    assert hd.loc[0, "state"] == "above δ"
    # two seeds: the numbers, no state, and the note why
    few = contrast_table(_rows(effects, seeds=2), [PRIVILEGED], higher_is_better={},
                         margin={"dice": 0.02}, alpha=0.05)
    assert set(few["state"]) == {""} and few["note"].str.contains("2 seeds").all()


def test_a_report_has_the_privileged_effect_table(tmp_path):
    effects = {"mono": {"WT": 0.0, "ET": 0.0}, "kd": {"WT": 0.06, "ET": 0.04},
               "kd_born_again": {"WT": 0.01, "ET": 0.04}}
    _rows(effects, seed_noise=0.004).rename(columns={"N": "n"}).to_csv(
        tmp_path / "scores.csv", index=False)
    out = run_cli("report", "--per-case", str(tmp_path / "scores.csv"), "--baseline", "mono",
                  "--margin", "dice=0.02", "--contrast", "privileged=kd:kd_born_again",
                  "--reports-dir", str(tmp_path / "reports"), "--date", "2026-12-04",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (folder,) = (tmp_path / "reports" / "scores").iterdir()
    table = pd.read_csv(folder / "tables" / "contrasts.csv").set_index("region")
    assert table.loc["WT", "difference"] == pytest.approx(0.05, abs=0.02)
    assert table.loc["WT", "state"] == "above δ"
    assert table.loc["ET", "difference"] == pytest.approx(0.0, abs=0.02)
    assert table.loc["ET", "state"] == "within ±δ"
    assert (table["seeds"] == 5).all() and (table["contrast"] == "privileged").all()
    results = json.loads((folder / "results.json").read_text())
    assert results["statistics"]["contrasts"] == [
        {"name": "privileged", "strategy": "kd", "control": "kd_born_again"}]
    page = (folder / "index.html").read_text()
    assert "privileged" in page and "kd − kd_born_again" in page
    bad = run_cli("report", "--per-case", str(tmp_path / "scores.csv"), "--baseline", "mono",
                  "--contrast", "privileged=kd:kd_mono", "--reports-dir",
                  str(tmp_path / "reports"), cwd=tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "contrast 'privileged': control 'kd_mono' has no row" in bad.stderr


def test_the_same_jobs_under_two_labels_are_said_to_be_identical():
    table = _rows({"kd": {"WT": 0.03}})
    copy = table.assign(strategy="kd_fixed_teacher")
    out = contrast_table(pd.concat([table, copy]), [SimpleNamespace(
        name="teacher_size", strategy="kd_fixed_teacher", control="kd")],
        higher_is_better={}, margin={"dice": 0.02}, alpha=0.05)
    assert out.loc[0, "difference"] == 0 and "identical results" in out.loc[0, "note"]

"""Power planning: the analytic power of the run-level test against its simulated rejection
rate, the sample sizes it derives, a pilot's components, and ``kdbench plan --power``."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli

from kdbench.report.power import (
    Pilot,
    cases_for,
    detectable,
    power,
    read_pilot,
    seeds_for,
    tost_power,
)
from kdbench.report.run_level import Components, run_level

PARTS = Components(run=0.02**2 * 2, case=0.0, residual=0.05**2 * 2)  # a gain's, issue 22


def _grid(rng, gain, seeds, cases, parts=PARTS):
    run = rng.normal(0, np.sqrt(parts.run), seeds)
    case = rng.normal(0, np.sqrt(parts.case), cases) if parts.case else np.zeros(cases)
    return gain + case[:, None] + run[None, :] + rng.normal(0, np.sqrt(parts.residual),
                                                            (cases, seeds))


def test_analytic_power_matches_the_simulated_test():
    rng = np.random.default_rng(0)
    seeds, cases = 5, 100
    gain = detectable(PARTS, seeds, cases, 0.05)
    assert power(gain, PARTS, seeds, cases, 0.05) == pytest.approx(0.8, abs=1e-6)
    hits = sum(run_level(_grid(rng, gain, seeds, cases)).p < 0.05 for _ in range(2000))
    assert hits / 2000 == pytest.approx(0.8, abs=0.03)
    # at no gain the power is the level
    assert power(0.0, PARTS, seeds, cases, 0.05) == pytest.approx(0.05, abs=1e-9)
    faded = sum(run_level(_grid(rng, 0.0, seeds, cases)).state(0.04, 0.05) == "faded"
                for _ in range(2000))
    # the TOST approximation is conservative: the simulated rate is at least the planned one
    assert faded / 2000 >= tost_power(0.04, PARTS, seeds, cases, 0.05) - 0.03


def test_sample_sizes():
    delta = 0.02
    seeds = seeds_for(delta, PARTS, 100, 0.05)
    assert detectable(PARTS, seeds, 100, 0.05) <= delta < detectable(PARTS, seeds - 1, 100,
                                                                      0.05)
    # more test cases cannot replace training runs: with these components no number of
    # cases at 5 seeds detects 0.02
    assert cases_for(delta, PARTS, 5, 0.05) is None
    easy = Components(run=1e-6, case=0.0, residual=0.05**2 * 2)
    cases = cases_for(delta, easy, 5, 0.05)
    assert detectable(easy, 5, cases, 0.05) <= delta < detectable(easy, 5, cases - 1, 0.05)
    assert seeds_for(delta, PARTS, 100, 0.05, faded=True) >= 3


def test_a_pilot_gives_its_components_and_holds_them_outside_its_range(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for n, run_sd in ((10, 0.04), (40, 0.02)):
        for seed in range(30):
            shift = {"mono": rng.normal(0, run_sd), "kd": rng.normal(0, run_sd)}
            for c in range(40):
                base = rng.normal(0.7, 0.1)
                for s in ("mono", "kd"):
                    rows.append({"strategy": s, "n": n, "seed": seed, "case": f"c{c}",
                                 "region": "WT", "metric": "dice",
                                 "value": base + shift[s] + rng.normal(0, 0.03)})
    pd.DataFrame(rows).to_csv(tmp_path / "pilot.csv", index=False)
    pilot = read_pilot(tmp_path / "pilot.csv", strategy="kd", baseline="mono", region="WT",
                       metric="dice", scenario=None, higher_is_better=True)
    assert sorted(pilot.per_n) == [10, 40] and pilot.seeds == {10: 30, 40: 30}
    assert np.sqrt(pilot.per_n[10].run) == pytest.approx(0.04 * np.sqrt(2), rel=0.35)
    assert np.sqrt(pilot.per_n[40].run) == pytest.approx(0.02 * np.sqrt(2), rel=0.35)
    assert np.sqrt(pilot.per_n[10].residual) == pytest.approx(0.03 * np.sqrt(2), rel=0.1)
    inside, outside = pilot.at(20), pilot.at(1000)
    assert not inside[1] and outside[1]
    assert outside[0].run == pytest.approx(pilot.per_n[40].run)
    low, high = sorted((pilot.per_n[10].run, pilot.per_n[40].run))
    assert low <= inside[0].run <= high
    with pytest.raises(Exception, match="no N with two seeds"):
        read_pilot(tmp_path / "pilot.csv", strategy="genkd", baseline="mono", region="WT",
                   metric="dice", scenario=None, higher_is_better=True)
    assert isinstance(pilot, Pilot)


def test_plan_power_from_a_pilot_table(tmp_path):
    rng = np.random.default_rng(2)
    rows = [{"strategy": s, "n": 12, "seed": seed, "scenario": "t1ce_only", "subset": "t1ce",
             "case": f"c{c}", "region": "WT", "metric": "dice",
             "value": 0.7 + rng.normal(0, 0.05) + 0.01 * seed}
            for s in ("mono", "kd") for seed in range(3) for c in range(20)]
    pd.DataFrame(rows).to_csv(tmp_path / "pilot.csv", index=False)
    out = run_cli("plan", "protocols/brats2021_learning_curve.yaml", "--power", "--pilot",
                  str(tmp_path / "pilot.csv"), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [r["N"] for r in result["rows"]] == [25, 50, 100, 200, 400, 700, 1000]
    first = result["rows"][0]
    assert first["seeds"] == 3 and first["cases"] == 251 and first["delta"] == 0.02
    assert first["extrapolated"] and first["detectable"] > 0
    assert first["seeds_for_delta"] is None or first["seeds_for_delta"] >= 3
    text = run_cli("plan", "protocols/brats2021_learning_curve.yaml", "--power", "--pilot",
                   str(tmp_path / "pilot.csv"), env={"COLUMNS": "200"})
    assert text.returncode == 0 and "detectable gain" in text.stdout
    bad = run_cli("plan", "protocols/brats2021_learning_curve.yaml", "--power")
    assert bad.returncode == 2 and "--power needs --pilot" in bad.stderr

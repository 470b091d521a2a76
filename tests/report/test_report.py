"""``kdbench report`` end to end: records with known effects in a real MLflow store (SQLite),
the report folder, byte-identical reruns, the page in a headless browser, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import phantom_protocol, run_cli
from report.browser import find_or_install_chromium, load_page

from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.report.analysis import Settings, analyse
from kdbench.report.build import ReportSettings, write_report
from kdbench.report.tables import subset_tables
from kdbench.tracking import Tracker

CASES = [f"BraTS2021_{i:05d}" for i in range(12)]
EFFECT = {"mono": 0.0, "kd": 0.06, "hemis": -0.1}


def _values(strategy: str, n: int, seed: int, metric: str, rng: np.random.Generator):
    base = np.linspace(0.45, 0.75, len(CASES)) + 0.05 * np.log2(n)
    dice = np.clip(base + EFFECT[strategy] + rng.normal(0, 0.02, len(CASES)), 0, 1)
    return dice if metric == "dice" else 60 * (1 - dice) + 2


def record(plan, uri: str, folder) -> Tracker:
    """A complete MLflow run with a per-case table for every strategy Job of ``plan`` (no
    training: the values have known effects), written as the engine writes them."""
    tracker = Tracker(plan, uri)
    rng = np.random.default_rng(0)
    for job in plan.jobs:
        if not job.strategy_roles:
            continue
        rows = []
        for subset in job.modalities.evaluate:
            for region in ("WT", "TC", "ET"):
                for metric in ("dice", "hd95"):
                    for case, value in zip(CASES, _values(job.component, job.n, job.seed,
                                                          metric, rng), strict=True):
                        rows.append({"subset": "+".join(subset), "case": case,
                                     "region": region, "metric": metric, "value": value})
        table = folder / job.id / "per_case.csv"
        table.parent.mkdir(parents=True)
        pd.DataFrame(rows).to_csv(table, index=False)
        run_id = tracker.start(job, split_hash="test", dependency_runs={})
        tracker.finish(run_id, [table], {})
    return tracker


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, registry):
    root = tmp_path_factory.mktemp("report")
    path = phantom_protocol(
        root, "report_test", cases=30, training_sizes=[4, 8, 16], seeds=[0, 1, 2],
        strategies=[{"name": "mono"}, {"name": "kd"}, {"name": "hemis"}],
        metrics=["dice", "hd95"], split={"test_size": 12, "validation_fraction": 0.25},
        statistics={"baseline": "mono", "bootstrap": 200, "margin": {"dice": 0.02},
                    "primary": {"strategy": "kd", "scenario": "t1ce_only", "region": "WT"}})
    plan = build_plan(load_protocol(path, registry), registry)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracker = record(plan, uri, root / "tables")
    # a crashed attempt: a run that never completed must not count
    crashed = tracker.start(plan.jobs[-1], split_hash="test", dependency_runs={})
    tracker.client.log_metric(crashed, "test_dice_WT", 0.0)
    return {"root": root, "protocol": path, "uri": uri, "plan": plan}


@pytest.fixture(scope="module")
def report(recorded, registry):
    settings = ReportSettings(recorded["protocol"], recorded["root"] / "data",
                              recorded["root"] / "runs", recorded["uri"],
                              recorded["root"] / "reports", date="2026-11-29")
    return write_report(settings, registry)


def test_report_folder_holds_every_table_and_figure(report, recorded):
    folder = report.parent
    assert folder.parent == recorded["root"] / "reports" / "report_test"
    assert folder.name.startswith("2026-11-29_")
    for ext in ("md", "tex", "csv"):
        for metric in ("dice", "hd95"):
            assert (folder / "tables" / f"table_t1ce_only_t1ce_{metric}.{ext}").is_file()
    for name in ("summary", "tests", "case_tests", "friedman", "rank_stability", "n_star",
                 "benefit_per_n"):
        assert (folder / "tables" / f"{name}.csv").is_file()
    for figure in ("learning_curve_t1ce_only_t1ce_dice", "learning_curve_t1ce_only_t1ce_hd95",
                   "gain_t1ce_only_t1ce", "rank_stability_t1ce_only_t1ce",
                   "critical_difference_t1ce_only_t1ce"):
        for ext in ("png", "svg"):
            assert (folder / "figures" / f"{figure}.{ext}").stat().st_size > 1000, figure
    html = report.read_text()
    assert "No qualitative figure" in html  # no prepared dataset nor predictions here
    tex = (folder / "tables" / "table_t1ce_only_t1ce_dice.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex


def test_report_numbers_come_from_complete_runs(report, recorded):
    results = json.loads((report.parent / "results.json").read_text())
    assert results["records"]["runs"] == 27  # 3 strategies x 3 N x 3 seeds; not the crash
    summary = pd.DataFrame(results["summary"])
    per_case = pd.read_csv(report.parent / "per_case.csv")
    assert set(per_case.columns) >= {"strategy", "N", "seed", "scenario", "subset", "case",
                                     "region", "metric", "value"}
    # the table's mean is the mean over cases and seeds
    cell = per_case[(per_case["strategy"] == "kd") & (per_case["N"] == 8)
                    & (per_case["region"] == "TC") & (per_case["metric"] == "dice")]
    row = summary[(summary["strategy"] == "kd") & (summary["N"] == 8)
                  & (summary["region"] == "TC") & (summary["metric"] == "dice")].iloc[0]
    assert row["mean"] == pytest.approx(cell.groupby("case")["value"].mean().mean())
    assert row["low"] < row["mean"] < row["high"]
    # the known effects: kd better than mono everywhere, hemis worse; the best marked
    versus = summary[(summary["metric"] == "dice") & (summary["strategy"] != "mono")]
    assert versus[versus["strategy"] == "kd"]["significant"].all()
    assert versus[versus["strategy"] == "kd"]["better"].all()
    assert not versus[versus["strategy"] == "hemis"]["better"].any()
    best = summary[(summary["metric"] == "dice") & summary["best"]]
    assert set(best["strategy"]) == {"kd"}
    best_hd = summary[(summary["metric"] == "hd95") & summary["best"]]
    assert set(best_hd["strategy"]) == {"kd"}  # smaller is better
    table = (report.parent / "tables" / "table_t1ce_only_t1ce_dice.md").read_text()
    assert "| kd " in table and "**" in table and "\\*" in table


def test_tests_csv_has_a_row_per_test_with_its_unit(report):
    tests = pd.read_csv(report.parent / "tables" / "tests.csv")
    assert {"scenario", "subset", "N", "region", "metric", "strategy", "baseline", "unit",
            "seeds", "cases", "difference", "ci_low", "ci_high", "p", "p_adjusted",
            "primary"} <= set(tests.columns)
    assert set(tests["unit"]) == {"seed", "case"}
    assert set(tests["baseline"]) == {"mono"} and set(tests["strategy"]) == {"kd", "hemis"}
    seeds = tests[tests["unit"] == "seed"]
    assert (seeds["seeds"] == 3).all() and (seeds["cases"] == 12).all()
    # the primary endpoint: kd, WT Dice, at every N, as a fixed sequence
    primary = seeds[seeds["primary"]].sort_values("N")
    assert list(primary["N"]) == [4, 8, 16] and set(primary["strategy"]) == {"kd"}
    assert set(primary["region"]) == {"WT"} and set(primary["metric"]) == {"dice"}
    assert list(primary["p_adjusted"]) == list(primary["p"].cummax())
    # a seed row's difference is the mean over seeds and cases of strategy - baseline
    per_case = pd.read_csv(report.parent / "per_case.csv")
    cell = per_case[(per_case["N"] == 8) & (per_case["region"] == "TC")
                    & (per_case["metric"] == "hd95")]
    wide = cell.pivot_table(index=["seed", "case"], columns="strategy", values="value")
    row = seeds[(seeds["N"] == 8) & (seeds["region"] == "TC") & (seeds["metric"] == "hd95")
                & (seeds["strategy"] == "kd")].iloc[0]
    assert row["difference"] == pytest.approx((wide["kd"] - wide["mono"]).mean())
    assert row["ci_low"] < row["difference"] < row["ci_high"] < 0  # kd's HD95 is lower
    n_star = pd.read_csv(report.parent / "tables" / "n_star.csv")
    assert {"scenario", "subset", "region", "metric", "strategy", "delta", "n_star",
            "n_star_low", "n_star_high", "state_N4", "state_N8", "state_N16"} <= set(
                n_star.columns)
    kd = n_star[(n_star["strategy"] == "kd") & (n_star["metric"] == "dice")]
    assert (kd["delta"] == 0.02).all() and set(kd["state_N4"]) == {"benefit"}
    assert set(kd["n_star"].astype(str)) == {"beyond"}  # a lasting +0.06 gain
    html = report.read_text()
    assert "training runs as the unit" in html and "conditional on these trained models" in html


def test_runs_and_report_record_the_machine_and_versions(report, recorded):
    """Every run is tagged with its CPU/BLAS/GPU and versions (full list as an artefact);
    the report lists each machine its complete runs came from."""
    from importlib.metadata import version

    from kdbench.environment import cpu_model

    results = json.loads((report.parent / "results.json").read_text())
    env = results["environment"]
    assert env["report"]["machine"]["cpu"] == cpu_model()
    assert env["report"]["packages"]["nnunetv2"] == version("nnunetv2")
    (machine,) = env["runs"]  # one machine, one install: 27 complete runs
    assert machine["jobs"] == 27
    assert machine["machine.cpu"] == cpu_model()
    assert machine["package.torch"] == version("torch")
    assert machine["machine.torch_blas"] and machine["machine.torch_cpu_capability"]
    assert machine["versions_sha256"] == env["report"]["versions_sha256"]
    assert cpu_model() in report.read_text()
    tracker = Tracker(recorded["plan"], recorded["uri"])
    run = tracker.complete_run(next(j for j in recorded["plan"].jobs
                                    if j.component == "kd"))
    logged = tracker.client.download_artifacts(run.info.run_id, "environment.json",
                                               str(recorded["root"]))
    full = json.loads(Path(logged).read_text())
    assert full["versions"]["mlflow"] == version("mlflow")
    assert full["versions_sha256"] == run.data.tags["kdbench.versions_sha256"]


def test_same_records_give_the_same_bytes(report, recorded, registry, tmp_path):
    # another process with another string-hash seed (set iteration order differs)
    out = run_cli("report", str(recorded["protocol"]), "--tracking-uri", recorded["uri"],
                  "--data-dir", str(recorded["root"] / "data"), "--runs-dir",
                  str(recorded["root"] / "runs"), "--output", str(tmp_path / "again"),
                  "--date", "2026-11-29", env={"PYTHONHASHSEED": "12345"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    again = tmp_path / "again" / "index.html"
    first = sorted(p.relative_to(report.parent) for p in report.parent.rglob("*")
                   if p.is_file())
    second = sorted(p.relative_to(again.parent) for p in again.parent.rglob("*")
                    if p.is_file())
    assert first == second and len(first) > 20
    for relative in first:
        if relative.name == "results.json":
            continue
        assert (report.parent / relative).read_bytes() == (again.parent / relative).read_bytes(), \
            relative
    # results.json names the environment of the process that wrote it: the test process has
    # test-only distributions on sys.path (plugin packages made by other tests), the command
    # has not; everything else, the runs' machines included, is the same to the byte.
    one, two = (json.loads((folder / "results.json").read_text())
                for folder in (report.parent, again.parent))
    assert one["environment"]["report"]["machine"] == two["environment"]["report"]["machine"]
    for data in (one, two):
        data["environment"].pop("report")
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


@pytest.mark.browser
def test_the_page_loads_in_a_headless_browser(report):
    page = load_page(find_or_install_chromium(), report)
    assert page.console_errors == []
    assert page.tables >= 5 and page.table_rows > 40
    assert page.images >= 5 and page.images_loaded == page.images
    assert page.title.startswith("kdbench report: report_test")
    assert "Methods and assumptions" in page.headings


def test_subset_table_of_an_all_scenario():
    from kdbench.modalities import all_combinations, label

    rows = []
    rng = np.random.default_rng(0)
    for subset in all_combinations():
        for strategy, gain in (("hemis", 0.0), ("uhved", 0.02)):
            for case in range(6):
                rows.append({"strategy": strategy, "N": 10, "seed": 0, "scenario": "any",
                             "subset": label(subset), "case": f"c{case}", "region": "WT",
                             "metric": "dice", "value": 0.5 + 0.05 * len(subset) + gain
                             + rng.normal(0, 0.01), "run_id": "r", "job_id": "j"})
    analysis = analyse(pd.DataFrame(rows), Settings("hemis", "wilcoxon", "holm", 0.05, 100,
                                                    {"dice": True}), ["hemis", "uhved"])
    (table,) = subset_tables(analysis, {"any": 15})
    assert len(table.cells) == 15
    assert list(table.cells.index[:4]) == ["t1", "t1ce", "t2", "flair"]
    assert table.cells.index[-1] == "t1+t1ce+t2+flair"
    assert table.bold[("WT", "uhved")].all() and not table.bold[("WT", "hemis")].any()
    assert "t1+t1ce+t2+flair" in table.markdown()


def test_cli_report_without_runs_says_what_to_do(tmp_path):
    path = phantom_protocol(tmp_path, "never_run")
    result = run_cli("report", str(path), "--tracking-uri",
                     f"sqlite:///{tmp_path / 'empty.db'}", cwd=tmp_path)
    assert result.returncode != 0
    assert "no complete run" in result.stderr and "kdbench run" in result.stderr
    assert not (tmp_path / "reports").exists()
    bad = run_cli("report", str(path), "--date", "tomorrow", cwd=tmp_path)
    assert bad.returncode != 0 and "YYYY-MM-DD" in bad.stderr


REPORTER = '''
import pandas as pd
from kdbench import ReportSection, Reporter, hookimpl
from kdbench.report.tables import Table


class Medians(Reporter):
    """Median test Dice per strategy and N."""
    name = "medians"

    def section(self, analysis):
        dice = analysis.per_case[analysis.per_case["metric"] == "dice"]
        medians = dice.groupby(["strategy", "N"])["value"].median().unstack("N")
        cells = medians.map(lambda v: f"{v:.3f}")
        cells.columns = [f"N={n}" for n in cells.columns]
        blank = cells.map(lambda v: "")
        table = Table("medians", "median Dice", cells, cells.map(lambda v: False), blank)
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots()
        medians.T.plot(ax=ax)
        return ReportSection("Median Dice", ["Medians over cases and seeds."], [table],
                             [("curve", fig, "median Dice vs N")])


class Broken(Reporter):
    """Returns the wrong type."""
    name = "broken"

    def section(self, analysis):
        return {"title": "not a section"}


@hookimpl
def kdbench_register_reporters(registry):
    registry.add(Medians)
    if BROKEN:
        registry.add(Broken)
'''


@pytest.mark.parametrize("broken", [False, True])
def test_a_reporter_plugin_adds_a_section(recorded, tmp_path, broken):
    from kdbench.errors import KdbenchError
    from kdbench.plugin_manager import load_plugins

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "medians.py").write_text(f"BROKEN = {broken}\n" + REPORTER)
    registry = load_plugins([plugins], use_env=False)
    settings = ReportSettings(recorded["protocol"], recorded["root"] / "data",
                              recorded["root"] / "runs", recorded["uri"],
                              output=tmp_path / "report", date="2026-11-29")
    if broken:
        with pytest.raises(KdbenchError, match=r"reporter 'broken' .*returned dict.*"
                                               r"kdbench\.ReportSection"):
            write_report(settings, registry)
        assert not (tmp_path / "report").exists()  # nothing half-written
        assert not list(tmp_path.glob(".report*"))
        return
    index = write_report(settings, registry)
    html = index.read_text()
    assert "Median Dice" in html and "Medians over cases and seeds." in html
    assert "medians_curve.png" in html
    assert (index.parent / "figures" / "medians_curve.svg").is_file()
    table = (index.parent / "tables" / "medians.md").read_text()
    assert "| kd " in table and "N=16" in table


CD_SCRIPT = '''
import sys
import numpy as np, pandas as pd
from pathlib import Path
from kdbench.report.analysis import Settings, analyse
from kdbench.report import figures

rng = np.random.default_rng(0)
rows = [{"strategy": s, "N": 10, "seed": 0, "scenario": "x", "subset": "t1ce", "case": f"c{c}",
         "region": "WT", "metric": "dice", "value": 0.5 + g + rng.normal(0, 0.05),
         "run_id": "r", "job_id": "j"}
        for c in range(10) for s, g in (("alpha", 0.0), ("beta", 0.01), ("gamma", 0.02),
                                         ("delta", 0.3))]
analysis = analyse(pd.DataFrame(rows), Settings(None, "wilcoxon", "holm", 0.05, 100,
                                                {"dice": True}),
                   ["alpha", "beta", "gamma", "delta"])
if len(sys.argv) > 2:  # what nnU-Net's progress plot does to the global settings
    import seaborn
    seaborn.set(font_scale=2.5)
with figures.plotting():
    figures.save(figures.cd_diagrams(analysis, "x", "t1ce"), Path(sys.argv[1]), "cd")
'''


def test_critical_difference_diagram_bytes_do_not_depend_on_string_hashing(tmp_path):
    """scikit-posthocs draws crossbars through sets of names; the saved file must not change
    with the process's hash seed, nor after another library changed matplotlib's settings."""
    import os
    import subprocess
    import sys

    script = tmp_path / "cd.py"
    script.write_text(CD_SCRIPT)
    files = []
    for seed in ("1", "2", "3"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        styled = ["seaborn"] if seed == "3" else []
        done = subprocess.run([sys.executable, str(script), str(out), *styled], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        files.append(((out / "cd.svg").read_bytes(), (out / "cd.png").read_bytes()))
    assert files[0] == files[1] == files[2]


def _same_files(one: Path, two: Path) -> list[str]:
    names = sorted(p.relative_to(one).as_posix() for p in one.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(two).as_posix() for p in two.rglob("*")
                           if p.is_file())
    return [n for n in names if (one / n).read_bytes() != (two / n).read_bytes()]


def test_a_per_case_table_reproduces_the_report(report, recorded, registry, tmp_path):
    """The report's own per_case.csv, reported alone (the statistics given as options) or
    with the protocol, gives the same tables to the byte, and the same per-case table."""
    folder = report.parent
    alone = run_cli("report", "--per-case", str(folder / "per_case.csv"), "--baseline", "mono",
                    "--margin", "dice=0.02", "--primary",
                    "strategy=kd,scenario=t1ce_only,region=WT", "--bootstrap", "200",
                    "--strategies", "mono,kd,hemis", "--output", str(tmp_path / "alone"),
                    "--date", "2026-11-29", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert _same_files(folder / "tables", tmp_path / "alone" / "tables") == []
    assert (folder / "per_case.csv").read_bytes() == \
        (tmp_path / "alone" / "per_case.csv").read_bytes()
    with_protocol = write_report(ReportSettings(
        recorded["protocol"], output=tmp_path / "with", date="2026-11-29",
        per_case=folder / "per_case.csv"), registry)
    assert _same_files(folder / "tables", with_protocol.parent / "tables") == []
    page = (tmp_path / "alone" / "index.html").read_text()
    assert "the per-case table" in page and "a per-case table names none" in page


def test_a_per_case_table_from_elsewhere(tmp_path):
    """Columns named as ``kdbench evaluate --csv`` plus strategy, n and seed; no scenario or
    subset: the same analysis, the strategies ordered baseline first."""
    rng = np.random.default_rng(0)
    rows = [{"strategy": s, "n": n, "seed": seed, "case": f"c{c}", "region": "WT",
             "metric": "dice", "value": 0.7 + (0.05 if s == "new" else 0) + rng.normal(0, 0.02)}
            for s in ("new", "old") for n in (10, 20) for seed in range(4) for c in range(6)]
    pd.DataFrame(rows).to_csv(tmp_path / "scores.csv", index=False)
    out = run_cli("report", "--per-case", str(tmp_path / "scores.csv"), "--baseline", "old",
                  "--margin", "dice=0.02", "--reports-dir", str(tmp_path / "reports"),
                  "--date", "2026-12-01", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (folder,) = (tmp_path / "reports" / "scores").iterdir()
    results = json.loads((folder / "results.json").read_text())
    assert results["strategies"] == ["old", "new"]
    tests = pd.read_csv(folder / "tables" / "tests.csv")
    seeds = tests[tests["unit"] == "seed"]
    assert set(seeds["scenario"]) == {"default"} and set(seeds["subset"]) == {"input"}
    assert (seeds["seeds"] == 4).all() and seeds["significant"].all()
    states = pd.read_csv(folder / "tables" / "n_star.csv")
    assert set(states["state_N10"]) == {"benefit"} and set(states["n_star"]) == {"beyond"}


def test_power_planning_from_a_report_folder(report):
    """`kdbench plan P --power --pilot <report folder>`: the detectable gain per N and the
    seeds and cases for δ, from the report's per-case table."""
    out = run_cli("plan", "protocols/brats2021_learning_curve.yaml", "--power", "--pilot",
                  str(report.parent), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["pilot_sizes"] == [4, 8, 16] and result["pilot"].endswith("per_case.csv")
    assert all(r["detectable"] > 0 and "seeds_for_delta" in r and "cases_for_delta" in r
               for r in result["rows"])

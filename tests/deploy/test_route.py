"""Routing: each case goes to the model the report ranks best for the sequences it has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdbench.deploy.model_folder import ExportedModel
from kdbench.deploy.route import router
from kdbench.errors import KdbenchError

DIRECTIONS = {"dice": True, "hd95": False, "volume": None}


def _model(folder: str, strategy: str, n: int, accepts: list[list[str]],
           scenario: str = "s") -> ExportedModel:
    manifest = {"model": {"component": strategy, "n": n}, "accepts": accepts,
                "roles": [[strategy, scenario]], "label_convention": "brats2021"}
    return ExportedModel(Path(folder), manifest)


def _report(tmp_path: Path, rows: list[tuple], primary: dict | None = None) -> Path:
    summary = [{"scenario": sc, "subset": sub, "N": n, "strategy": st, "region": reg,
                "metric": met, "mean": mean} for sc, sub, n, st, reg, met, mean in rows]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"summary": summary, "statistics": {"primary": primary}}))
    return path


def test_each_case_gets_the_best_scored_model_for_its_subset(tmp_path):
    mono = _model("mono", "mono", 16, [["t1ce"]])
    hemis = _model("hemis", "hemis", 16, [["t1ce"], ["flair"], ["t1ce", "flair"]])
    multi = _model("multi", "multi", 16, [["t1", "t1ce", "t2", "flair"]], scenario="t1ce_only")
    report = _report(tmp_path, [
        ("s", "t1ce", 16, "mono", "WT", "dice", 0.70),
        ("s", "t1ce", 16, "hemis", "WT", "dice", 0.65),
        ("s", "flair", 16, "hemis", "WT", "dice", 0.80),
        ("s", "t1ce+flair", 16, "hemis", "WT", "dice", 0.86),
        # multi reads all four but is reported under its scenario's subset
        ("t1ce_only", "t1ce", 16, "multi", "WT", "dice", 0.90),
        ("s", "t1ce", 16, "mono", "WT", "dice_other", 0.99),  # another metric: ignored
        ("s", "t1ce", 8, "mono", "WT", "dice", 0.99),  # another N: ignored
    ])
    route = router([mono, hemis, multi], report, DIRECTIONS)
    assert (route.region, route.metric) == ("WT", "dice")
    t1ce = route.choose({"t1ce"})
    assert (t1ce.model, t1ce.subset, t1ce.score) == (0, ("t1ce",), 0.70)
    flair = route.choose({"flair"})
    assert (flair.model, flair.subset) == (1, ("flair",))
    both = route.choose({"t1ce", "flair"})
    assert (both.model, both.subset, both.strategy) == (1, ("t1ce", "flair"), "hemis")
    every = route.choose({"t1", "t1ce", "t2", "flair"})
    assert (every.model, every.strategy, every.score) == (2, "multi", 0.90)
    assert route.choose({"t2"}) is None


def test_a_lower_is_better_primary_and_ties_keep_the_first_model(tmp_path):
    a = _model("a", "mono", 4, [["t1ce"]])
    b = _model("b", "kd", 4, [["t1ce"]])
    report = _report(tmp_path, [("s", "t1ce", 4, "mono", "ET", "hd95", 9.0),
                                ("s", "t1ce", 4, "kd", "ET", "hd95", 7.5)],
                     primary={"region": "ET", "metric": "hd95"})
    assert router([a, b], report, DIRECTIONS).choose({"t1ce"}).model == 1
    tie = _report(tmp_path, [("s", "t1ce", 4, "mono", "WT", "dice", 0.5),
                             ("s", "t1ce", 4, "kd", "WT", "dice", 0.5)])
    assert router([a, b], tie, DIRECTIONS).choose({"t1ce"}).model == 0


def test_a_model_the_report_never_scored_is_named(tmp_path):
    a = _model("somewhere/a", "mono", 4, [["t1ce"]])
    report = _report(tmp_path, [("s", "t1ce", 8, "mono", "WT", "dice", 0.5)])
    with pytest.raises(KdbenchError, match=r"no WT dice of model somewhere/a \(mono at N=4\)"):
        router([a], report, DIRECTIONS)
    with pytest.raises(KdbenchError, match="no results.json"):
        router([a], tmp_path / "nowhere", DIRECTIONS)
    volume = _report(tmp_path, [("s", "t1ce", 4, "mono", "WT", "volume", 5.0)],
                     primary={"region": "WT", "metric": "volume"})
    with pytest.raises(KdbenchError, match="has no direction"):
        router([a], volume, DIRECTIONS)

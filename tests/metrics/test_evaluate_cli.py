"""``kdbench evaluate``: matching files, the command as a user runs it, and its errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import typer
from helpers import run_cli
from typer.testing import CliRunner

from kdbench import KdbenchError
from kdbench.cli.evaluate import evaluate, find_predictions, find_references, match_cases
from kdbench.metrics.scoring import score_case
from kdbench_plugins.brats_metrics import Dice, Hd95

SHAPE = (24, 24, 24)
AFFINE = np.diag([-1.0, -1.0, 1.5, 1.0])


def labels_2021(shift: int) -> np.ndarray:
    """A tumour in BraTS 2021 labels: 2 edema, 1 core, 4 enhancing."""
    grid = np.ogrid[:24, :24, :24]
    r = np.sqrt((grid[0] - 12 - shift) ** 2 + (grid[1] - 12) ** 2 + (grid[2] - 12) ** 2)
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[r <= 8] = 2
    seg[r <= 5] = 4
    seg[r <= 3] = 1
    return seg


def write(path: Path, seg: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(seg, AFFINE), str(path))
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Predictions flat, references in the BraTS 2021 release layout."""
    for i, case in enumerate(("BraTS2021_00000", "BraTS2021_00001", "BraTS2021_00002")):
        write(tmp_path / "ref" / case / f"{case}_seg.nii.gz", labels_2021(0))
        write(tmp_path / "ref" / case / f"{case}_flair.nii.gz", labels_2021(0))  # not a label
        write(tmp_path / "pred" / f"{case}.nii.gz", labels_2021(i))
    (tmp_path / "pred" / "plans.json").write_text("{}")  # nnU-Net leaves these beside
    return tmp_path / "pred", tmp_path / "ref"


def test_reference_layouts(tmp_path):
    write(tmp_path / "a.nii.gz", labels_2021(0))
    write(tmp_path / "b" / "b_seg.nii.gz", labels_2021(0))
    write(tmp_path / "c" / "c-seg.nii.gz", labels_2021(0))
    write(tmp_path / "d.nii", labels_2021(0))
    (tmp_path / "e").mkdir()  # a folder without segmentation is no case
    found = find_references(tmp_path)
    assert {k: v.relative_to(tmp_path).as_posix() for k, v in found.items()} == {
        "a": "a.nii.gz", "b": "b/b_seg.nii.gz", "c": "c/c-seg.nii.gz", "d": "d.nii"}


def test_matching_reports_both_sides(folders):
    pred, ref = folders
    predictions, references = find_predictions(pred), find_references(ref)
    del references["BraTS2021_00001"]
    predictions.pop("BraTS2021_00002")
    with pytest.raises(KdbenchError, match=r"1 prediction\(s\) without reference: "
                       r"BraTS2021_00001; 1 reference\(s\) without prediction: BraTS2021_00002"):
        match_cases(predictions, references, allow_missing=False)
    pairs, skipped = match_cases(predictions, references, allow_missing=True)
    assert skipped == ["BraTS2021_00001"]
    assert pairs["BraTS2021_00002"][0] is None and pairs["BraTS2021_00000"][0] is not None


def test_evaluate_command(folders, tmp_path):
    pred, ref = folders
    out = run_cli("evaluate", "--pred", str(pred), "--ref", str(ref), "--labels", "brats2021",
                  "--metrics", "dice,hd95", "--json", str(tmp_path / "r.json"),
                  "--csv", str(tmp_path / "r.csv"))
    assert out.returncode == 0, out.stderr
    assert "POOLED" in out.stdout and "hd95" in out.stdout  # the table names its HD95
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["labels"] == "brats2021" and set(data["metrics"]) == {"dice", "hd95"}
    assert len(data["cases"]) == 3 * 3 * 2 and len(data["summary"]) == 3 * 2
    with open(tmp_path / "r.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["case", "region", "metric", "value"]
    # The command scores with the library code: same numbers as score_case on the arrays.
    for shift, case in enumerate(("BraTS2021_00000", "BraTS2021_00001", "BraTS2021_00002")):
        expected = score_case(labels_2021(shift), labels_2021(0), (1.0, 1.0, 1.5), [Dice, Hd95],
                              "brats2021")
        got = [r for r in data["cases"] if r["case"] == case]
        assert [(r["region"], r["metric"]) for r in got] == [
            (e["region"], e["metric"]) for e in expected]
        assert [r["value"] for r in got] == pytest.approx([e["value"] for e in expected])
        assert [float(r["value"]) for r in rows if r["case"] == case] == pytest.approx(
            [e["value"] for e in expected])
    assert data["cases"][0]["value"] == 1.0  # case 0 is perfect


def test_evaluate_missing_reference_exits_2(folders):
    pred, ref = folders
    write(pred / "BraTS2021_00009.nii.gz", labels_2021(0))
    out = run_cli("evaluate", "--pred", str(pred), "--ref", str(ref), "--labels", "brats2021")
    assert out.returncode == 2
    assert "prediction(s) without reference: BraTS2021_00009" in out.stderr
    assert "Traceback" not in out.stderr


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(evaluate)
    return app


def test_allow_missing_scores_an_empty_prediction(folders, tmp_path):
    pred, ref = folders
    (pred / "BraTS2021_00002.nii.gz").unlink()
    result = CliRunner().invoke(_app(), [
        "--pred", str(pred), "--ref", str(ref), "--labels", "brats2021", "--metrics", "dice",
        "--allow-missing", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["missing_as_empty"] == ["BraTS2021_00002"]
    assert {r["value"] for r in data["cases"] if r["case"] == "BraTS2021_00002"} == {0.0}


def test_wrong_convention_is_a_clear_error(folders):
    pred, ref = folders
    result = CliRunner().invoke(_app(), ["--pred", str(pred), "--ref", str(ref),
                                         "--labels", "brats2023", "--metrics", "dice"])
    assert isinstance(result.exception, KdbenchError)
    assert "label values 4 are not in the brats2023 convention" in str(result.exception)
    assert "fit brats2021" in str(result.exception)


def test_tagged_scores_of_two_tools_go_to_report_per_case(folders, tmp_path):
    """`evaluate --csv --tag strategy=...,n=...,seed=...` writes rows that `report --per-case`
    reads: another tool's predictions get the same statistics."""
    pred, ref = folders
    tables = []
    for strategy in ("mine", "theirs"):
        for seed in (0, 1, 2):
            path = tmp_path / f"{strategy}{seed}.csv"
            out = run_cli("evaluate", "--pred", str(pred), "--ref", str(ref), "--metrics",
                          "dice", "--csv", str(path), "--tag",
                          f"strategy={strategy},n=10,seed={seed}")
            assert out.returncode == 0, out.stderr
            tables.append(path.read_text().splitlines())
    header = tables[0][0]
    assert header == "strategy,n,seed,case,region,metric,value"
    (tmp_path / "all.csv").write_text("\n".join([header] + [r for t in tables for r in t[1:]])
                                      + "\n")
    out = run_cli("report", "--per-case", str(tmp_path / "all.csv"), "--baseline", "theirs",
                  "--output", str(tmp_path / "report"), "--date", "2026-12-04")
    assert out.returncode == 0, out.stderr
    tests = (tmp_path / "report" / "tables" / "tests.csv").read_text()
    assert "mine,theirs,seed,3,3" in tests  # identical predictions: a zero gain, 3 seeds
    bad = run_cli("evaluate", "--pred", str(pred), "--ref", str(ref), "--tag", "strategy")
    assert bad.returncode == 2 and "--tag 'strategy': expected key=value pairs" in bad.stderr

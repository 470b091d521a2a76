"""Label conventions, regions, score_case / score_files / summarize, metric lookup."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kdbench import KdbenchError
from kdbench.metrics.overlap import dice
from kdbench.metrics.regions import region_masks, to_canonical
from kdbench.metrics.scoring import (
    COLUMNS,
    check_metric,
    metric_classes,
    score_case,
    score_files,
    summarize,
)
from kdbench.metrics.surface import EMPTY_HD95_MM
from kdbench_plugins.brats_metrics import Dice, Hd95, Sensitivity, VolumeRef

SHAPE = (24, 24, 24)
AFFINE = np.diag([-1.0, -1.0, 2.0, 1.0])


def tumour(shift: int = 0, enhancing: bool = True) -> np.ndarray:
    """A nested tumour in canonical labels: edema shell, core, enhancing rim."""
    grid = np.ogrid[:24, :24, :24]
    r = np.sqrt(sum((g - 12 - shift * (i == 0)) ** 2 for i, g in enumerate(grid)))
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[r <= 8] = 1
    labels[r <= 5] = 2
    if enhancing:
        labels[(r > 3) & (r <= 5)] = 3
    return labels


#: canonical -> brats2021 values (1 edema -> 2, 2 core -> 1, 3 enhancing -> 4)
TO_2021 = np.array([0, 2, 1, 4], dtype=np.uint8)


def test_conventions_map_to_canonical():
    canonical = tumour()
    np.testing.assert_array_equal(to_canonical(TO_2021[canonical], "brats2021"), canonical)
    to_2023 = np.array([0, 2, 1, 3], dtype=np.uint8)
    np.testing.assert_array_equal(to_canonical(to_2023[canonical], "brats2023"), canonical)
    np.testing.assert_array_equal(to_canonical(canonical, "canonical"), canonical)
    np.testing.assert_array_equal(to_canonical(canonical.astype(np.float32), "canonical"),
                                  canonical)


def test_unknown_label_values_are_refused_with_a_hint():
    with pytest.raises(KdbenchError, match=r"label values 4 .*brats2023.*fit brats2021"):
        to_canonical(TO_2021[tumour()], "brats2023")
    with pytest.raises(KdbenchError, match="unknown label convention"):
        to_canonical(tumour(), "brats2019")


def test_regions_are_nested():
    masks = region_masks(tumour())
    assert list(masks) == ["WT", "TC", "ET"]
    assert (masks["ET"] <= masks["TC"]).all() and (masks["TC"] <= masks["WT"]).all()
    np.testing.assert_array_equal(masks["WT"], tumour() > 0)


def test_score_case_rows_and_conventions():
    ref, pred = tumour(), tumour(shift=2)
    rows = score_case(TO_2021[pred], TO_2021[ref], (1.0, 1.0, 2.0), [Dice, Hd95()],
                      "brats2021")
    assert [(r["region"], r["metric"]) for r in rows] == [
        (region, metric) for region in ("WT", "TC", "ET") for metric in ("dice", "hd95")]
    values = {(r["region"], r["metric"]): r["value"] for r in rows}
    assert values["WT", "dice"] == pytest.approx(dice(pred > 0, ref > 0))
    assert 0 < values["ET", "hd95"] < 10
    # The same case in the canonical convention, or a canonical prediction against 2021 labels.
    assert score_case(pred, ref, (1.0, 1.0, 2.0), [Dice, Hd95], "canonical") == rows
    assert score_case(pred, TO_2021[ref], (1.0, 1.0, 2.0), [Dice, Hd95], "brats2021",
                      pred_convention="canonical") == rows


def test_score_case_empty_region_in_prediction():
    rows = score_case(tumour(enhancing=False), tumour(), (1.0, 1.0, 1.0), [Dice, Hd95],
                      "canonical")
    values = {(r["region"], r["metric"]): r["value"] for r in rows}
    assert values["ET", "dice"] == 0.0 and values["ET", "hd95"] == EMPTY_HD95_MM
    with pytest.raises(KdbenchError, match="shape"):
        score_case(tumour()[1:], tumour(), (1.0, 1.0, 1.0), [Dice], "canonical")


def write(path: Path, labels: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), str(path))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    pairs = {}
    for i, case in enumerate(("c1", "c2", "c3")):
        ref = write(tmp_path / "ref" / f"{case}.nii.gz", TO_2021[tumour()])
        pred = write(tmp_path / "pred" / f"{case}.nii.gz", TO_2021[tumour(shift=i)])
        pairs[case] = (pred, ref)
    return pairs


def test_score_files_long_table(files):
    table = score_files(files, [Dice, Hd95, VolumeRef], "brats2021")
    assert tuple(table.columns) == COLUMNS
    assert len(table) == 3 * 3 * 3
    assert list(dict.fromkeys(table["case"])) == ["c1", "c2", "c3"]
    c1 = table[table["case"] == "c1"].set_index(["region", "metric"])["value"]
    assert c1["WT", "dice"] == 1.0 and c1["WT", "hd95"] == 0.0
    # spacing from the header: 2 mm along z
    assert c1["WT", "volume_ref"] == pytest.approx((tumour() > 0).sum() * 2 / 1000)
    c3 = table[table["case"] == "c3"].set_index(["region", "metric"])["value"]
    assert c3["WT", "dice"] < 1.0


def test_score_files_in_worker_processes_gives_the_same_table(files):
    one = score_files(files, [Dice, Sensitivity], "brats2021")
    two = score_files(files, [Dice, Sensitivity], "brats2021", workers=2)
    assert one.equals(two)


def test_missing_prediction_scores_as_empty(files):
    table = score_files({"c1": (None, files["c1"][1])}, [Dice, Hd95], "brats2021")
    assert set(table.loc[table["metric"] == "dice", "value"]) == {0.0}
    assert set(table.loc[table["metric"] == "hd95", "value"]) == {EMPTY_HD95_MM}


def test_mismatched_files_name_the_case_and_files(files, tmp_path):
    ref = files["c1"][1]
    small = write(tmp_path / "bad" / "shape.nii.gz", np.zeros((24, 24, 20)))
    with pytest.raises(KdbenchError, match=r"case c1: prediction .*shape.nii.gz has shape"):
        score_files({"c1": (small, ref)}, [Dice], "brats2021")
    moved = write(tmp_path / "bad" / "affine.nii.gz", TO_2021[tumour()], np.diag([1, 1, 2, 1.]))
    with pytest.raises(KdbenchError, match=r"case c1: .*affine.nii.gz .*different affines"):
        score_files({"c1": (moved, ref)}, [Dice], "brats2021")
    with pytest.raises(KdbenchError, match="case c1: prediction file .*nope.nii.gz does not"):
        score_files({"c1": (tmp_path / "nope.nii.gz", ref)}, [Dice], "brats2021")
    with pytest.raises(KdbenchError, match=r"case c2 .*label values 4 are not in the brats2023"):
        score_files({"c2": files["c2"]}, [Dice], "brats2023")


def test_summarize_by_hand(files):
    table = score_files(files, [Dice], "brats2021")
    summary = summarize(table)
    assert list(summary.columns) == ["region", "metric", "mean", "std", "median", "n"]
    assert list(summary["region"]) == ["WT", "TC", "ET"]
    wt = table.loc[table["region"] == "WT", "value"].to_numpy()
    row = summary.iloc[0]
    assert row["mean"] == pytest.approx(wt.mean())
    assert row["std"] == pytest.approx(wt.std(ddof=1))
    assert row["median"] == pytest.approx(np.median(wt)) and row["n"] == 3
    single = summarize(table[table["case"] == "c1"])
    assert math.isnan(single.iloc[0]["std"])


def test_metric_classes(registry):
    assert metric_classes(registry, ["hd95", "dice"]) == [Hd95, Dice]
    assert metric_classes(registry.metrics, "dice, hd95,dice") == [Dice, Hd95]
    assert [c.name for c in metric_classes(registry)] == registry.metrics.names()
    with pytest.raises(KdbenchError, match=r"unknown metric 'dise'.*did you mean 'dice'"):
        metric_classes(registry, ["dise"])


def test_a_metric_without_compute_is_refused():
    from kdbench import Metric

    class Bare(Metric):
        """No compute."""

        name = "bare"

    with pytest.raises(KdbenchError, match="bare.*must implement compute.*definition"):
        check_metric(Bare)

    class Duck:  # not a kdbench.Metric: held to the attributes scoring reads
        name = "duck"

        def compute(self, pred, ref, spacing):
            return 0.0

    with pytest.raises(KdbenchError, match="duck.*lacks unit, higher_is_better, definition"):
        check_metric(Duck)

"""Tests of the nnU-Net raw dataset reader (plugins/nnunet_raw.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import release_factory as rf

from kdbench.cases import Release
from kdbench.components.dataset import DatasetOptions
from kdbench_plugins.brats import BratsRelease
from kdbench_plugins.nnunet_raw import (
    NnUNetRawDataset,
    label_convention,
    map_channels,
)


def read(root: Path) -> Release:
    return NnUNetRawDataset().read(root, DatasetOptions())


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return rf.make_release(tmp_path, "nnunet")


def edit_spec(root: Path, **changes: Any) -> None:
    spec = json.loads((root / "dataset.json").read_text())
    spec.update(changes)
    (root / "dataset.json").write_text(json.dumps(spec))


def test_detect(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert NnUNetRawDataset.detect(dataset) == "nnunet"
    assert BratsRelease.detect(dataset) is None
    other = tmp_path_factory.mktemp("others")
    for scheme in ("2018", "2019", "2020", "2021", "2023"):
        assert NnUNetRawDataset.detect(rf.make_release(other / scheme, scheme, 1)) is None
    assert NnUNetRawDataset.detect(other / "missing") is None


def test_read_maps_channels_by_name_and_labels(dataset: Path) -> None:
    release = read(dataset)
    assert release.problems == []
    assert (release.layout, release.label_convention) == ("nnunet", "canonical")
    assert [c.case_id for c in release.cases] == rf.case_ids("nnunet")
    for case in release.cases:
        assert tuple(case.images) == rf.MODALITIES
        # FLAIR is channel 0 in this dataset.json, not kdbench's channel 3.
        assert case.images["flair"].name == f"{case.case_id}_0000.nii.gz"
        for modality, path in case.images.items():
            assert rf.modality_of(path) == modality
        data = np.asanyarray(nib.load(case.label).dataobj)
        mapped = np.vectorize(release.label_map.__getitem__)(data)
        np.testing.assert_array_equal(mapped, rf.expected_label(case.case_id))
        assert case.metadata["source_id"] == case.case_id


@pytest.mark.parametrize(("names", "expected"), [
    ({"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}, ["t1", "t1ce", "t2", "flair"]),
    ({"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"}, ["t1", "t1ce", "t2", "flair"]),
    ({"0": "Flair", "1": "T1-Gd", "2": "t1", "3": "T2"}, ["flair", "t1ce", "t1", "t2"]),
    ({"0": "T1Gd", "1": "t1ce", "2": "T2", "3": "FLAIR"}, None),  # t1ce twice, no t1
    ({"0": "T1", "1": "T1ce", "2": "T2"}, None),
    ({"0": "T1", "1": "T1ce", "2": "T2", "3": "DWI"}, None),
    (None, None),
])
def test_map_channels(names: dict[str, str] | None, expected: list[str] | None) -> None:
    channels, problem = map_channels(names)
    if expected is None:
        assert problem and channels == {}
    else:
        assert problem is None
        assert [channels[f"{i:04d}"] for i in range(4)] == expected


@pytest.mark.parametrize(("labels", "order", "expected"), [
    (rf.NNUNET_LABELS, [1, 2, 3], "canonical"),
    (rf.NNUNET_LABELS, None, None),  # regions need regions_class_order
    ({"background": 0, "whole tumor": [1, 2, 4], "tumor core": [2, 4], "enhancing": [4]},
     [1, 2, 4], None),
    ({"background": 0, "edema": 1, "non-enhancing tumor": 2, "enhancing tumour": 3}, None,
     "canonical"),
    ({"background": 0, "NCR/NET": 1, "edema": 2, "enhancing tumor": 4}, None, "brats2021"),
    ({"background": 0, "necrotic core": 1, "peritumoral edema": 2, "enhancing": 3}, None,
     "brats2023"),
    ({"background": 0, "edema": 2, "necrotic": 1, "enhancing": 3, "resection": 4}, None, None),
    ({"background": 0, "edema": 3, "necrotic": 1, "enhancing": 2}, None, None),
    ({"background": 0, "tumour": 1}, None, None),
    ("labels", None, None),
    ({"background": 0, "whole tumor": [[1, 2, 3]]}, [1, 2, 3], None),
])
def test_label_convention(labels: Any, order: Any, expected: str | None) -> None:
    assert label_convention(labels, order) == expected


def test_plain_labels_in_a_dataset(dataset: Path) -> None:
    edit_spec(dataset, labels={"background": 0, "edema": 1, "necrosis": 2, "enhancing": 3})
    assert read(dataset).label_convention == "canonical"


def test_unknown_labels_are_a_release_problem(dataset: Path) -> None:
    edit_spec(dataset, labels={"background": 0, "tumour": 1})
    release = read(dataset)
    [problem] = release.problems
    assert problem.case is None and "tumour" in problem.problem
    assert "whole tumor" in problem.fix and "0/1/2/3" in problem.fix


def test_missing_channel_is_a_release_problem(dataset: Path) -> None:
    edit_spec(dataset, channel_names={"0": "FLAIR", "1": "T1", "2": "T1ce"})
    [problem] = read(dataset).problems
    assert problem.case is None and "t2" in problem.problem


def test_unreadable_dataset_json(dataset: Path) -> None:
    (dataset / "dataset.json").write_text("{not json")
    [problem] = read(dataset).problems
    assert problem.case is None and "dataset.json" in problem.problem


def test_missing_files_are_case_problems(dataset: Path) -> None:
    first, second = rf.case_ids("nnunet")[:2]
    (dataset / "imagesTr" / f"{first}_0003.nii.gz").unlink()  # T2
    (dataset / "labelsTr" / f"{second}.nii.gz").unlink()
    release = read(dataset)
    by_case = {p.case: p for p in release.problems}
    assert set(by_case) == {first, second}
    assert "missing t2" in by_case[first].problem
    assert by_case[first].file == dataset / "imagesTr" / f"{first}_0003.nii.gz"
    assert "missing segmentation" in by_case[second].problem
    assert all(p.fix.endswith("--exclude-bad") for p in release.problems)


def test_empty_dataset(dataset: Path) -> None:
    for path in [*(dataset / "imagesTr").iterdir(), *(dataset / "labelsTr").iterdir()]:
        path.unlink()
    [problem] = read(dataset).problems
    assert problem.case is None and "no case" in problem.problem

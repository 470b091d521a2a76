"""Tests of the BraTS release reader (plugins/brats.py) on fake releases of every naming scheme."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import release_factory as rf
from pydantic import ValidationError

from kdbench.cases import Release
from kdbench_plugins.brats import BratsOptions, BratsRelease
from kdbench_plugins.nnunet_raw import NnUNetRawDataset

BRATS_SCHEMES = ("2018", "2019", "2020", "2021", "2023")


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("releases")
    return {s: rf.make_release(root / s, s) for s in rf.SCHEMES}


def read(root: Path, layout: str = "auto") -> Release:
    return BratsRelease().read(root, BratsOptions(layout=layout))


def canonical_label(release: Release, path: Path) -> np.ndarray:
    """The label file mapped to canonical values with the release's map."""
    data = np.asanyarray(nib.load(path).dataobj)
    lut = np.zeros(max(release.label_map) + 1, dtype=np.uint8)
    for source, target in release.label_map.items():
        lut[source] = target
    return lut[data]


@pytest.mark.parametrize("scheme", BRATS_SCHEMES)
def test_detect(releases: dict[str, Path], scheme: str) -> None:
    assert BratsRelease.detect(releases[scheme]) == rf.LAYOUTS[scheme]
    assert NnUNetRawDataset.detect(releases[scheme]) is None


def test_does_not_detect_nnunet_or_other_folders(releases: dict[str, Path],
                                                 tmp_path: Path) -> None:
    assert BratsRelease.detect(releases["nnunet"]) is None
    assert BratsRelease.detect(tmp_path) is None  # empty
    assert BratsRelease.detect(tmp_path / "missing") is None
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("not a release")
    assert BratsRelease.detect(tmp_path) is None


@pytest.mark.parametrize("scheme", BRATS_SCHEMES)
def test_read_maps_cases_files_labels_and_metadata(releases: dict[str, Path],
                                                   scheme: str) -> None:
    root = releases[scheme]
    release = read(root)
    assert release.problems == []
    assert release.layout == rf.LAYOUTS[scheme]
    assert release.label_convention == ("brats2023" if scheme == "2023" else "brats2021")
    ids = [c.case_id for c in release.cases]
    assert ids == sorted(rf.case_ids(scheme))
    grades = rf.expected_grades(scheme)
    for case in release.cases:
        cid = case.case_id
        assert tuple(case.images) == rf.MODALITIES
        for modality, path in case.images.items():
            assert path.is_file() and path.parent.name == cid
            assert path.name.startswith(cid)
            assert rf.modality_of(path) == modality  # the file really holds that modality
        if scheme in ("2018", "2019"):
            assert case.images["t1"].parent.parent.name == grades[cid]
        assert case.metadata.get("grade") == grades.get(cid)
        assert case.metadata["source_id"] == cid
        np.testing.assert_array_equal(canonical_label(release, case.label),
                                      rf.expected_label(cid))


def test_2023_names_and_source(releases: dict[str, Path]) -> None:
    case = read(releases["2023"]).cases[0]
    assert case.images["t1ce"].name == f"{case.case_id}-t1c.nii.gz"
    assert case.images["flair"].name == f"{case.case_id}-t2f.nii.gz"
    assert case.label.name == f"{case.case_id}-seg.nii.gz"
    assert case.metadata["source"] == "GLI"


def test_2020_plain_nii_and_segm_quirk(releases: dict[str, Path]) -> None:
    first, *_, last = read(releases["2020"]).cases
    assert first.images["flair"].name == f"{first.case_id}_flair.nii"
    assert last.label is not None and last.label.name == rf.SEGM_QUIRK


def test_segm_quirk_is_not_guessed_among_several(tmp_path: Path) -> None:
    root = rf.make_release(tmp_path, "2021", n_cases=2)
    cid = rf.case_ids("2021")[0]
    seg = root / cid / f"{cid}_seg.nii.gz"
    shutil.copy(seg, root / cid / "a_Segm.nii")
    seg.rename(root / cid / "b_seg_v2.nii.gz")
    release = read(root)
    [problem] = release.problems
    assert problem.case == cid and "missing segmentation" in problem.problem
    assert "a_Segm.nii" in problem.problem and "b_seg_v2.nii.gz" in problem.problem
    assert problem.fix.endswith("--exclude-bad")


@pytest.mark.parametrize(("scheme", "forced"), [("2021", "2023"), ("2023", "2019-2021"),
                                                ("2018", "2019-2021"), ("2021", "2018")])
def test_forced_layout_mismatch_is_a_problem(releases: dict[str, Path], scheme: str,
                                             forced: str) -> None:
    release = read(releases[scheme], forced)
    [problem] = release.problems
    assert problem.case is None
    assert forced in problem.problem and rf.LAYOUTS[scheme] in problem.problem
    assert release.cases == []


def test_forced_layout_that_fits(releases: dict[str, Path]) -> None:
    release = read(releases["2019"], "2018")
    assert release.problems == [] and len(release.cases) == 3


def test_nnunet_layout_is_not_a_choice() -> None:
    with pytest.raises(ValidationError):
        BratsOptions(layout="nnunet")


def test_nnunet_folder_points_to_nnunet_raw(releases: dict[str, Path]) -> None:
    [problem] = read(releases["nnunet"]).problems
    assert problem.case is None and "nnunet_raw" in problem.fix


def test_empty_release(tmp_path: Path) -> None:
    release = read(tmp_path)
    [problem] = release.problems
    assert problem.case is None and "no BraTS case" in problem.problem
    assert release.cases == []
    (tmp_path / "BraTS2021_00000").mkdir()  # a case folder without files is not a case
    assert "no case found" in read(tmp_path, "2019-2021").problems[0].problem


def test_listing_problems_of_the_bad_release(tmp_path: Path) -> None:
    root, expected = rf.make_bad_release(tmp_path)
    release = read(root)
    assert release.layout == "2019-2021"
    by_case = {p.case: p for p in release.problems}
    # The reader finds what file names show; the rest needs voxels (integrity checks).
    listed = {c: k for c, k in expected.items() if k.startswith(("missing", "not safe"))}
    assert set(by_case) == set(listed)
    for cid, keyword in listed.items():
        assert keyword in by_case[cid].problem
        assert by_case[cid].fix.endswith("or leave the case out with --exclude-bad")
    assert by_case["BraTS2021_01000"].file == root / "BraTS2021_01000" / \
        "BraTS2021_01000_t2.nii.gz"
    unsafe = "BraTS2021_é01"
    assert by_case[unsafe].file == root / unsafe
    assert unsafe in {c.case_id for c in release.cases}  # listed, and marked bad


def test_duplicate_case_in_hgg_and_lgg(tmp_path: Path) -> None:
    root, expected = rf.make_bad_release_2018(tmp_path)
    release = read(root)
    [(dup, keyword)] = expected.items()
    [problem] = release.problems
    assert problem.case == dup and keyword in problem.problem
    assert problem.file == root / "LGG" / dup and "HGG" in problem.problem
    ids = [c.case_id for c in release.cases]
    assert ids.count(dup) == 1 and len(ids) == 3


def test_mapping_tables_link_the_ids_of_one_patient(tmp_path: Path) -> None:
    """BraTS 2020's name_mapping.csv, a BraTS 2021-style table and a 2023 one (saved as CSV)
    are mapping tables; a CSV with fewer than two BraTS-year columns is not."""
    root = rf.make_release(tmp_path / "release", "2021", n_cases=3)
    ids = rf.case_ids("2021", 3)
    (root / "name_mapping.csv").write_text(
        "Grade,BraTS_2017_subject_ID,BraTS_2018_subject_ID,TCGA_TCIA_subject_ID,"
        "BraTS_2019_subject_ID,BraTS_2020_subject_ID\n"
        "HGG,Brats17_CBICA_AAB_1,Brats18_CBICA_AAB_1,NA,BraTS19_CBICA_AAB_1,"
        "BraTS20_Training_001\n"
        "LGG,NA,NA,TCGA-CS-4941,NA,BraTS20_Training_002\n")  # one id: no link
    (root / "BraTS21-17_Mapping.csv").write_text(
        "BraTS2021,BraTS2020,BraTS2019,BraTS2018,BraTS2017\n"
        f"{ids[0]},BraTS20_Training_001,BraTS19_CBICA_AAB_1,Brats18_CBICA_AAB_1,\n"
        f"{ids[1]},BraTS20_Training_003,,Brats18_2013_2_1,n/a\n")
    (root / "BraTS2023_2017_GLI_Mapping.csv").write_text(
        "BraTS2023,BraTS2021,Site\nBraTS-GLI-00002-000,BraTS2021_00002,upenn\n")
    (root / "survival_info.csv").write_text(
        "Brats20ID,Age,Survival_days\nBraTS20_Training_001,60,289\n")  # one id column
    (root / "hostile.csv").write_text("BraTS2021,BraTS2018\n../../etc,Brats18_x_1\n")
    release = read(root)
    assert release.problems == []
    assert sorted(release.aliases) == sorted([
        ("Brats17_CBICA_AAB_1", "Brats18_CBICA_AAB_1", "BraTS19_CBICA_AAB_1",
         "BraTS20_Training_001"),
        (ids[0], "BraTS20_Training_001", "BraTS19_CBICA_AAB_1", "Brats18_CBICA_AAB_1"),
        (ids[1], "BraTS20_Training_003", "Brats18_2013_2_1"),
        ("BraTS-GLI-00002-000", ids[2])])
    from kdbench.cases import alias_map

    aliases = alias_map(release.aliases, ids)
    assert aliases["Brats17_CBICA_AAB_1"] == (ids[0],)  # through the 2020 table
    assert aliases["BraTS-GLI-00002-000"] == (ids[2],)
    assert "Brats18_x_1" not in aliases and ids[0] not in aliases


def test_releases_without_mapping_tables_have_no_aliases(releases: dict[str, Path]) -> None:
    for scheme in ("2018", "2021", "2023"):
        assert read(releases[scheme]).aliases == []
    # the factory's 2020 name_mapping.csv has only 2020 ids (older ones NA)
    assert read(releases["2020"]).aliases == []


def test_registered(registry) -> None:  # noqa: ANN001 - the session's Registry
    assert registry.datasets.get("brats") is BratsRelease
    assert registry.datasets.get("nnunet_raw") is NnUNetRawDataset


@pytest.mark.parametrize("module", ["kdbench_plugins.brats", "kdbench_plugins.nnunet_raw"])
def test_import_is_light(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('scipy', 'nibabel', 'nilearn', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""Tests of the voxel-level integrity checks (kdbench/data/integrity.py)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import release_factory as rf

from kdbench.cases import CaseFiles, Problem, Release
from kdbench.data.integrity import bad_cases, check_case, check_release, format_report
from kdbench_plugins.brats import BratsOptions, BratsRelease
from kdbench_plugins.nnunet_raw import NnUNetRawDataset


def read(root: Path) -> Release:
    if NnUNetRawDataset.detect(root):
        return NnUNetRawDataset().read(root, NnUNetRawDataset.Options())
    return BratsRelease().read(root, BratsOptions())


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], list[Problem]]:
    root, expected = rf.make_bad_release(tmp_path_factory.mktemp("bad"))
    return root, expected, check_release(read(root))


@pytest.mark.parametrize("scheme", rf.SCHEMES)
def test_good_release_has_no_problem(tmp_path: Path, scheme: str) -> None:
    release = read(rf.make_release(tmp_path, scheme))
    assert len(release.cases) == 3
    assert check_release(release) == []


def test_bad_release_names_every_broken_case(bad: tuple[Path, dict[str, str], list[Problem]]
                                             ) -> None:
    root, expected, problems = bad
    assert len(expected) >= 9
    assert bad_cases(problems) == set(expected)  # nothing reported for the good cases
    for cid, keyword in expected.items():
        [problem] = [p for p in problems if p.case == cid]  # each case is broken once
        assert keyword in problem.problem, (cid, problem)
        suffix, _ = rf.BAD_CASES[cid]
        if suffix is None:
            assert problem.file == root / cid
        else:
            assert problem.file.parent == root / cid
            assert problem.file.name.startswith(f"{cid}_{suffix}.nii")
        assert problem.fix.endswith("or leave the case out with --exclude-bad")


def test_problems_are_sorted(bad: tuple[Path, dict[str, str], list[Problem]]) -> None:
    _, _, problems = bad
    keys = [(p.case or "", str(p.file or "")) for p in problems]
    assert keys == sorted(keys)


def test_report(bad: tuple[Path, dict[str, str], list[Problem]]) -> None:
    root, expected, problems = bad
    report = format_report(root, problems)
    lines = report.splitlines()
    assert lines[0] == f"{len(expected)} problems in {len(expected)} cases of {root}:"
    assert len(lines) == 1 + len(problems)
    for problem, line in zip(problems, lines[1:], strict=True):
        assert problem.case in line and problem.problem in line and problem.fix in line
        shown = str(problem.file.relative_to(root))
        assert shown in line and str(root) not in line
    assert format_report(root, []) == f"no problem found in {root}"
    one = format_report(root, [Problem(None, None, "empty", "add cases")])
    assert one.splitlines() == [f"1 problem in 0 cases of {root}:", "  <release>  empty; add cases"]


def test_workers_give_the_same_result(bad: tuple[Path, dict[str, str], list[Problem]]) -> None:
    root, _, problems = bad
    assert check_release(read(root), workers=2) == problems


def test_duplicate_case_is_reported(tmp_path: Path) -> None:
    root, expected = rf.make_bad_release_2018(tmp_path)
    problems = check_release(read(root))
    assert bad_cases(problems) == set(expected)
    [(dup, keyword)] = expected.items()
    [problem] = problems
    assert problem.case == dup and keyword in problem.problem


def test_release_problems_come_first(tmp_path: Path) -> None:
    root = rf.make_release(tmp_path, "2021", n_cases=1)
    release = read(root)
    release.problems.append(Problem(None, None, "something about the release", "fix it"))
    release.problems.append(Problem("BraTS2021_00000", None, "a listing problem", "fix it"))
    problems = check_release(release)
    assert [p.case for p in problems] == [None, "BraTS2021_00000"]


def test_trailing_singleton_axis_is_accepted(tmp_path: Path) -> None:
    root = rf.make_release(tmp_path, "2021", n_cases=1)
    cid = rf.case_ids("2021", 1)[0]
    path = root / cid / f"{cid}_t1.nii.gz"
    data = np.asanyarray(nib.load(path).dataobj)
    rf.save(path, data[..., None])
    assert check_release(read(root)) == []


def test_label_values_follow_the_convention(tmp_path: Path) -> None:
    root = rf.make_release(tmp_path, "2023", n_cases=1)
    release = read(root)
    case = release.cases[0]
    seg = np.asanyarray(nib.load(case.label).dataobj).copy()
    seg[0, 0, 0] = 4  # BraTS 2021's enhancing value in a 2023 release
    rf.save(case.label, seg)
    [problem] = check_case(case, (0, 1, 2, 3))
    assert "label values 4" in problem.problem and "(0, 1, 2, 3)" in problem.problem


def test_grid_checked_against_first_image_without_segmentation(tmp_path: Path) -> None:
    root = rf.make_release(tmp_path, "2021", n_cases=1)
    case = read(root).cases[0]
    rf.save(case.images["flair"], np.zeros((12, 13, 13), dtype=np.int16))
    no_label = CaseFiles(case.case_id, case.images, None)
    [problem] = check_case(no_label, (0, 1, 2, 4))
    assert problem.file == case.images["flair"] and "t1's" in problem.problem

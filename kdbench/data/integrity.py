"""Integrity checks of a release: every file of every case is read, and every problem is kept.

A reader (:meth:`kdbench.Dataset.read`) lists file names only; here each image and label is
loaded and checked: inside the release folder (no link leading out of it), a header of sane size
and voxel type, readable, 3D, on the segmentation's grid (shape and affine), finite, and labels
within the release's convention. Case ids are checked here too (unique, safe as file names),
whatever the reader did, since they name files downstream. All problems of all cases are
collected and reported together, so one run tells the user everything to fix (or which cases
``--exclude-bad`` drops).

Cases are independent, so ``workers > 1`` checks them in a process pool; the functions it runs
are module-level so that the pool also works with the ``spawn`` start method.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kdbench.cases import LABEL_MAPS, CaseFiles, Problem, Release, unsafe_id_problem

EXCLUDE = "or leave the case out with --exclude-bad"
#: Largest difference between two affines (mm) still taken as the same grid.
AFFINE_ATOL = 1e-3
#: How many offending values a message lists.
SHOWN = 5
#: Most voxels a volume may claim in its header (512³; a BraTS volume has 240x240x155 = 8.9
#: million): a corrupt or hostile header must not make kdbench allocate gigabytes.
MAX_VOXELS = 512**3


def check_release(release: Release, *, workers: int = 1) -> list[Problem]:
    """All problems of a release: the reader's, and those found by reading every file.

    Args:
        release: the release as listed by its reader.
        workers: processes; cases are checked in parallel when above 1 (same result).

    Returns:
        The problems sorted by case id (release-level ones first), then file.
    """
    allowed = tuple(sorted(LABEL_MAPS[release.label_convention]))
    root = Path(release.root).resolve()
    jobs = [(case, allowed, root) for case in release.cases]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the caller may hold threads (torch, mlflow) that fork would copy badly.
        context = multiprocessing.get_context("spawn")
        chunk = max(1, len(jobs) // (workers * 4))
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            found = list(pool.map(_check_job, jobs, chunksize=chunk))
    else:
        found = [_check_job(job) for job in jobs]
    problems = list(release.problems) + _id_problems(release) + [p for c in found for p in c]
    return sorted(problems, key=_order)


def _id_problems(release: Release) -> list[Problem]:
    """Unsafe and repeated case ids that the reader did not report itself.

    A case id names files and folders downstream (nnU-Net's raw dataset, predictions, figures),
    so an id such as ``../../x`` from a third-party reader must stop here.
    """
    reported = {(p.case, p.problem.split(":")[0]) for p in release.problems}
    problems: list[Problem] = []
    seen: set[str] = set()
    for case in release.cases:
        cid = case.case_id
        if cid in seen and (cid, "duplicate case id") not in reported:
            problems.append(Problem(cid, None, "duplicate case id: the reader listed it twice",
                                    f"make case ids unique, {EXCLUDE}"))
            reported.add((cid, "duplicate case id"))
        seen.add(cid)
        problem = unsafe_id_problem(cid, None, EXCLUDE)
        if problem is not None and not any(p.case == cid and p.problem == problem.problem
                                           for p in release.problems):
            problems.append(problem)
    return problems


def bad_cases(problems: Iterable[Problem]) -> set[str]:
    """Ids of the cases with at least one problem (release-level problems name no case).

    Args:
        problems: problems, e.g. from :func:`check_release`.

    Returns:
        The case ids.
    """
    return {p.case for p in problems if p.case is not None}


def format_report(root: Path, problems: list[Problem]) -> str:
    """A readable report: ``N problems in M cases of ROOT:``, then one line per problem.

    Args:
        root: the release folder; files are shown relative to it.
        problems: the problems (in the order given).

    Returns:
        The report, one ``case  file  problem; fix`` line per problem.
    """
    root = Path(root)
    if not problems:
        return f"no problem found in {root}"
    cases = len(bad_cases(problems))
    head = (f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {cases} "
            f"case{'s' if cases != 1 else ''} of {root}:")
    rows = [(p.case or "<release>", _shown(root, p.file), f"{p.problem}; {p.fix}")
            for p in problems]
    width_case = max(len(r[0]) for r in rows)
    width_file = max(len(r[1]) for r in rows)
    lines = [f"  {c:<{width_case}}  " + (f"{f:<{width_file}}  " if width_file else "") + text
             for c, f, text in rows]
    return "\n".join([head, *lines])


def check_case(case: CaseFiles, allowed: tuple[int, ...], root: Path | None = None
               ) -> list[Problem]:
    """The problems of one case's files.

    Files the reader found missing are not in ``case`` and are not reported again here.

    Args:
        case: the case's files.
        allowed: the label values of the release's convention.
        root: the release folder; a file whose real path (links followed) lies outside it is
            reported and not read. ``None``: not checked.

    Returns:
        The problems, images in channel order, then the label.
    """
    import numpy as np

    problems: list[Problem] = []
    grids: dict[str, tuple[Path, tuple[int, ...], Any]] = {}
    files: list[tuple[str, Path]] = [*case.images.items()]
    if case.label is not None:
        files.append(("segmentation", case.label))
    if case.reference is not None:
        files.append(("reference segmentation", case.reference))
    for role, path in files:
        if root is not None and (outside := _outside(path, root)) is not None:
            problems.append(Problem(
                case.case_id, path, f"a link to {outside}, outside the release folder",
                f"copy the file into the release (kdbench reads only files inside the folder "
                f"it is given), {EXCLUDE}"))
            continue
        data, affine = _load(case.case_id, path, problems)
        if data is None:
            continue
        grids[role] = (path, data.shape, affine)
        if data.dtype.kind == "f":
            problems.extend(_non_finite(case.case_id, path, data))
        if role in ("segmentation", "reference segmentation"):
            problems.extend(_label_values(case.case_id, path, data, allowed))
        del data  # one volume in memory at a time
    # Every file must lie on the segmentation's grid (or the first image's, without one).
    if grids:
        ref_role = "segmentation" if "segmentation" in grids else next(iter(grids))
        _, ref_shape, ref_affine = grids[ref_role]
        for role, (path, shape, affine) in grids.items():
            if role == ref_role:
                continue
            if shape != ref_shape:
                problems.append(Problem(
                    case.case_id, path, f"shape {shape} differs from the {ref_role}'s "
                    f"{ref_shape}", f"resample the image onto the {ref_role}'s grid, {EXCLUDE}"))
            elif not np.allclose(affine, ref_affine, atol=AFFINE_ATOL, rtol=0):
                diff = float(np.abs(np.asarray(affine) - np.asarray(ref_affine)).max())
                problems.append(Problem(
                    case.case_id, path, f"affine differs from the {ref_role}'s (by up to "
                    f"{diff:.3g} mm)", f"re-export the image with the {ref_role}'s header, "
                    f"{EXCLUDE}"))
    return problems


def _check_job(job: tuple[CaseFiles, tuple[int, ...], Path | None]) -> list[Problem]:
    """:func:`check_case` on one ``(case, allowed, root)`` triple (a picklable pool task)."""
    return check_case(*job)


def _outside(path: Path, root: Path) -> Path | None:
    """The real path of ``path`` when it lies outside ``root`` (a resolved folder), else None."""
    real = Path(os.path.realpath(path))
    return None if real == root or real.is_relative_to(root) else real


def _load(case_id: str, path: Path, problems: list[Problem]) -> tuple[Any, Any]:
    """The 3D voxel array and affine of ``path``, or ``(None, None)`` after adding a problem.

    The header is checked before any voxel is read: dimensions, size and voxel type.
    """
    import nibabel as nib
    import numpy as np

    def unreadable(exc: Exception) -> tuple[None, None]:
        problems.append(Problem(case_id, path, f"unreadable: {type(exc).__name__}: {exc}",
                                f"re-download or re-export the file, {EXCLUDE}"))
        return None, None

    try:
        img = nib.load(path)
        shape, dtype = tuple(int(n) for n in img.shape), np.dtype(img.get_data_dtype())
    except Exception as exc:  # noqa: BLE001 - nibabel, gzip and zlib raise many types
        return unreadable(exc)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]  # a trailing singleton time axis holds one 3D volume
    if len(shape) != 3:
        problems.append(Problem(case_id, path, f"{len(shape)}D image (shape {tuple(img.shape)})"
                                " where 3D is expected", f"save a single 3D volume, {EXCLUDE}"))
        return None, None
    if math.prod(shape) > MAX_VOXELS:
        problems.append(Problem(case_id, path, f"the header claims {shape} = "
                                f"{math.prod(shape):,} voxels, more than kdbench reads (512³)",
                                f"the file is corrupt or not a brain MRI: re-export it, {EXCLUDE}"))
        return None, None
    if dtype.kind not in "iuf":
        problems.append(Problem(case_id, path, f"voxel type {_dtype_name(img, dtype)} is not a "
                                "number type", "save the volume as integers or floats (a "
                                f"grey-level image, not RGB or complex), {EXCLUDE}"))
        return None, None
    try:
        data = np.asanyarray(img.dataobj)
        affine = img.affine
    except Exception as exc:  # noqa: BLE001 - as above
        return unreadable(exc)
    if data.ndim == 4:
        data = data[..., 0]
    return data, affine


def _dtype_name(img: Any, dtype: Any) -> str:
    """NIfTI's name of a voxel type (``RGB24``, ``complex64``), else numpy's."""
    try:
        return str(img.header.get_value_label("datatype"))
    except Exception:  # noqa: BLE001 - not a NIfTI header
        return str(dtype)


def _non_finite(case_id: str, path: Path, data: Any) -> list[Problem]:
    """Problems for NaN and infinite voxels."""
    import numpy as np

    problems = []
    nan = int(np.isnan(data).sum())
    inf = int(np.isinf(data).sum())
    if nan:
        problems.append(Problem(case_id, path, f"NaN voxels ({nan})",
                                f"re-export the file without NaN, {EXCLUDE}"))
    if inf:
        problems.append(Problem(case_id, path, f"infinite voxels ({inf})",
                                f"re-export the file without infinite values, {EXCLUDE}"))
    return problems


def _label_values(case_id: str, path: Path, data: Any, allowed: tuple[int, ...]
                  ) -> list[Problem]:
    """Problems for non-integer label values and values outside the convention."""
    import numpy as np

    problems = []
    values = np.unique(data)
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]  # non-finite ones are reported already
        fractional = values[values != np.round(values)]
        if fractional.size:
            shown = ", ".join(f"{v:g}" for v in fractional[:SHOWN])
            problems.append(Problem(case_id, path, f"non-integer label values ({shown})",
                                    f"round or re-export the labels, {EXCLUDE}"))
        values = values[values == np.round(values)]
    unexpected = sorted({int(v) for v in values} - set(allowed))
    if unexpected:
        shown = ", ".join(str(v) for v in unexpected[:SHOWN])
        problems.append(Problem(
            case_id, path, f"label values {shown} outside the release's convention "
            f"({', '.join(str(v) for v in allowed)})",
            f"convert the labels to the release's convention, {EXCLUDE}"))
    return problems


def _order(problem: Problem) -> tuple[str, str, str]:
    """Sort key: case id (release-level first), then file, then text."""
    return (problem.case or "", str(problem.file or ""), problem.problem)


def _shown(root: Path, file: Path | None) -> str:
    """``file`` relative to ``root`` when it lies below it."""
    if file is None:
        return ""
    try:
        return str(Path(file).relative_to(root))
    except ValueError:
        return os.fspath(file)


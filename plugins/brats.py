"""The ``brats`` dataset: a BraTS release on disk (2018, 2019-2021 or 2023+ naming).

The release is read from ``dataset.path`` of the protocol; its layout is detected from the file
names (see docs/protocols.md). The case count is known only once the folder is read, so the
protocol checks of sizes against the pool happen at ``kdbench data prepare``.

Layouts:

- ``2018``: ``root/{HGG,LGG}/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`` (BraTS 2018 and
  2019); the grade comes from the folder.
- ``2019-2021``: ``root/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii(.gz)`` (BraTS 2020, 2021); the
  grade comes from ``name_mapping.csv`` when the release ships one (BraTS 2020).
- ``2023``: ``root/<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``; labels in the 2023 convention.

Any CSV in the release folder whose header has two or more BraTS-year id columns (BraTS 2020's
``name_mapping.csv``, BraTS 2021's ``BraTS21-17_Mapping.csv``, a BraTS 2023 mapping table saved
as CSV) links the ids of one patient across releases: ``Release.aliases`` (see
:func:`mapping_tables`).

Only file names are read here; :mod:`kdbench.data.integrity` reads the voxels.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import Field

from kdbench import CaseFiles, Dataset, DatasetOptions, Problem, Release, hookimpl
from kdbench.cases import is_safe_case_id

EXCLUDE = "or leave the case out with --exclude-bad"
GRADE_FOLDERS: tuple[str, ...] = ("HGG", "LGG")
#: File endings tried in this order (BraTS ships .nii.gz; some 2020 files are plain .nii).
NIFTI: tuple[str, ...] = (".nii.gz", ".nii")


class Scheme(NamedTuple):
    """How the files of a case are named in one layout.

    Attributes:
        sep: separator between the case id and the suffix.
        images: canonical modality -> file suffix.
        convention: the label convention (a key of ``LABEL_MAPS``).
        pattern: the layout as shown in messages.
    """

    sep: str
    images: Mapping[str, str]
    convention: str
    pattern: str


_SUFFIX_2021 = {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"}
SCHEMES: dict[str, Scheme] = {
    "2018": Scheme("_", _SUFFIX_2021, "brats2021",
                   "HGG/<case>/<case>_t1.nii.gz and LGG/<case>/<case>_t1.nii.gz"),
    "2019-2021": Scheme("_", _SUFFIX_2021, "brats2021", "<case>/<case>_t1.nii.gz"),
    "2023": Scheme("-", {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"},
                   "brats2023", "<case>/<case>-t1n.nii.gz"),
}
_SOURCE_2023 = re.compile(r"^BraTS-([A-Za-z]+)-")


class BratsOptions(DatasetOptions):
    """``dataset.options`` for a BraTS release."""

    layout: Literal["auto", "2018", "2019-2021", "2023"] = Field(
        "auto", description="Naming scheme of the release; 'auto' detects it from file names."
    )


class BratsRelease(Dataset):
    """A BraTS release on disk, mapped to channels t1, t1ce, t2, flair and labels 0/1/2/4."""

    name = "brats"
    version = "1"
    Options = BratsOptions

    @classmethod
    def detect(cls, root: Path) -> str | None:
        """The layout of the release at ``root`` (``"2018"``, ``"2019-2021"``, ``"2023"``).

        Args:
            root: the folder given by the user.

        Returns:
            The layout name, or ``None`` when no case folder is named like a BraTS one. Stops
            at the first case folder that is recognised, so it is cheap on a full release.
        """
        root = Path(root)
        if not root.is_dir() or is_nnunet_raw(root):
            return None
        for grade in GRADE_FOLDERS:
            if any(scheme_of(d) == "2019-2021" for d in subfolders(root / grade)):
                return "2018"
        for folder in subfolders(root):
            layout = scheme_of(folder)
            if layout is not None:
                return layout
        return None

    def read(self, root: Path, options: DatasetOptions) -> Release:
        """List the cases of the release at ``root`` (file names only).

        Args:
            root: the release folder.
            options: :class:`BratsOptions`; ``layout`` forces a layout.

        Returns:
            The release; problems (missing files, unsafe or duplicate ids, an empty release, a
            forced layout that does not fit the folder) are in ``Release.problems``.
        """
        root = Path(root)
        asked = getattr(options, "layout", "auto")
        if not root.is_dir():
            return _failed(root, asked, f"{root} is not a folder",
                           "set the dataset path to the folder of the release")
        if is_nnunet_raw(root):
            return _failed(root, asked, "an nnU-Net raw dataset (dataset.json, imagesTr), not a "
                           "BraTS release", "read it with the dataset source nnunet_raw")
        detected = self.detect(root)
        if asked != "auto" and detected is not None and detected != asked:
            return _failed(root, asked, f"layout {asked!r} was asked for but the files are "
                           f"named like layout {detected!r} ({SCHEMES[detected].pattern})",
                           f"set the layout option to 'auto' or {detected!r}")
        layout = detected or (asked if asked != "auto" else None)
        if layout is None:
            return _failed(root, asked, f"no BraTS case found in {root}",
                           "point the dataset path at the folder holding the case folders "
                           "(<case>/<case>_t1.nii.gz, <case>/<case>-t1n.nii.gz, or HGG/LGG)")
        return read_layout(root, layout)


def read_layout(root: Path, layout: str) -> Release:
    """List the cases of ``root`` in the given layout.

    Args:
        root: the release folder.
        layout: a key of :data:`SCHEMES`.

    Returns:
        The release, cases sorted by id.
    """
    scheme = SCHEMES[layout]
    if layout == "2018":
        found = [(d, {"grade": g}) for g in GRADE_FOLDERS for d in subfolders(root / g)]
    else:
        grades = name_mapping_grades(root)
        found = [(d, {"grade": grades[d.name]} if d.name in grades else {})
                 for d in subfolders(root)]
    cases: dict[str, CaseFiles] = {}
    where: dict[str, Path] = {}
    problems: list[Problem] = []
    for folder, metadata in found:
        names = nifti_names(folder)
        if not names:
            continue  # not a case folder (documentation, __MACOSX, ...)
        cid = folder.name
        if cid in cases:
            # Keep the first copy so that ids stay unique; the problem marks the case bad.
            first = where[cid].relative_to(root)
            problems.append(Problem(cid, folder, f"duplicate case id: also in {first}",
                                    f"remove one of the two folders, {EXCLUDE}"))
            continue
        case, found_problems = read_case(folder, names, scheme, metadata)
        cases[cid], where[cid] = case, folder
        problems.extend(found_problems)
    if not cases:
        problems.append(Problem(None, None, f"no case found in {root} (expected the {layout} "
                                f"layout: {scheme.pattern})",
                                "point the dataset path at the folder holding the case folders"))
    return Release(root, layout, scheme.convention, [cases[k] for k in sorted(cases)], problems,
                   mapping_tables(root))


def read_case(folder: Path, names: Mapping[str, str], scheme: Scheme,
              metadata: Mapping[str, str]) -> tuple[CaseFiles, list[Problem]]:
    """The files of one case folder and the problems with them.

    Args:
        folder: the case folder (its name is the case id).
        names: its NIfTI files, lower-cased name -> name (see :func:`nifti_names`).
        scheme: the naming scheme.
        metadata: metadata known from elsewhere (the grade).

    Returns:
        The case and its problems.
    """
    cid = folder.name
    problems = []
    if not is_safe_case_id(cid):
        problems.append(Problem(
            cid, folder, f"case id {cid!r} is not safe as a file name (ASCII letters, digits, "
            "'_', '.', '-' only)", f"rename the folder and its files, {EXCLUDE}"))
    images: dict[str, Path] = {}
    for modality, suffix in scheme.images.items():
        stem = f"{cid}{scheme.sep}{suffix}"
        path = find_file(folder, names, stem)
        if path is None:
            problems.append(Problem(cid, folder / f"{stem}.nii.gz",
                                    f"missing {modality} image {stem}.nii.gz",
                                    f"add the file, {EXCLUDE}"))
        else:
            images[modality] = path
    stem = f"{cid}{scheme.sep}seg"
    label = find_file(folder, names, stem)
    if label is None:
        # BraTS 2020 case 355 names its segmentation W39_1998.09.19_Segm.nii.
        others = [n for low, n in names.items() if "seg" in low.removeprefix(cid.lower())
                  and folder / n not in images.values()]
        if len(others) == 1:
            label = folder / others[0]
        else:
            several = f" (several candidates: {', '.join(sorted(others))})" if others else ""
            problems.append(Problem(cid, folder / f"{stem}.nii.gz",
                                    f"missing segmentation {stem}.nii.gz{several}",
                                    f"add the segmentation, {EXCLUDE}"))
    meta = {"source_id": cid, **metadata}
    if scheme.convention == "brats2023" and (match := _SOURCE_2023.match(cid)):
        meta["source"] = match.group(1).upper()
    # a reference for scoring beside the training label (the phantom's true labels under
    # annotation noise); BraTS releases have none
    reference = find_file(folder, names, f"{cid}{scheme.sep}seg_reference")
    return CaseFiles(cid, images, label, meta, reference), problems


def _failed(root: Path, layout: str, problem: str, fix: str) -> Release:
    """A release with no case and one release-level problem."""
    scheme = SCHEMES.get(layout, SCHEMES["2019-2021"])
    name = layout if layout in SCHEMES else "unknown"
    return Release(root, name, scheme.convention, [], [Problem(None, None, problem, fix)])


def is_nnunet_raw(root: Path) -> bool:
    """Whether ``root`` looks like an nnU-Net raw dataset (``dataset.json`` and ``imagesTr``).

    Args:
        root: a folder.

    Returns:
        True for an nnU-Net raw dataset.
    """
    return (root / "dataset.json").is_file() and (root / "imagesTr").is_dir()


def subfolders(folder: Path) -> Iterator[Path]:
    """Sub-folders of ``folder`` sorted by name, hidden and ``__MACOSX``-like ones left out.

    Args:
        folder: a folder (a missing one yields nothing).

    Yields:
        The sub-folders.
    """
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith((".", "__")) and entry.is_dir():
            yield entry


def nifti_names(folder: Path) -> dict[str, str]:
    """The NIfTI files of a folder, lower-cased name -> name (matching ignores case).

    Args:
        folder: a folder.

    Returns:
        The map; empty when the folder cannot be listed.
    """
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return {}
    return {n.lower(): n for n in sorted(names)
            if not n.startswith(".") and n.lower().endswith(NIFTI)}


def find_file(folder: Path, names: Mapping[str, str], stem: str) -> Path | None:
    """The file ``stem.nii.gz`` or ``stem.nii`` of ``folder``, whatever the case of its name.

    Args:
        folder: the case folder.
        names: its NIfTI files (see :func:`nifti_names`).
        stem: the file name without ending.

    Returns:
        The path, or ``None``.
    """
    for ending in NIFTI:
        name = names.get(f"{stem}{ending}".lower())
        if name is not None:
            return folder / name
    return None


def scheme_of(folder: Path) -> str | None:
    """The layout a case folder's file names follow (``"2019-2021"`` or ``"2023"``), if any.

    Args:
        folder: a candidate case folder.

    Returns:
        The layout, or ``None``.
    """
    names = nifti_names(folder)
    for layout in ("2023", "2019-2021"):
        scheme = SCHEMES[layout]
        for suffix in (*scheme.images.values(), "seg"):
            if find_file(folder, names, f"{folder.name}{scheme.sep}{suffix}") is not None:
                return layout
    return None


def name_mapping_grades(root: Path) -> dict[str, str]:
    """Case id -> grade from the ``name_mapping.csv`` of a BraTS 2020 release.

    Every column named like ``BraTS_2020_subject_ID`` is an id column, so the table of any
    year maps its own ids.

    Args:
        root: the release folder.

    Returns:
        The grades; empty without a readable table (grades only stratify splits, so a broken
        table costs the stratification, not the release).
    """
    path = root / "name_mapping.csv"
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    grades: dict[str, str] = {}
    for row in rows:
        grade = (row.get("Grade") or "").strip()
        if not grade:
            continue
        for key, value in row.items():
            if isinstance(key, str) and key.lower().endswith("subject_id") and value:
                grades[value.strip()] = grade
    return grades


#: A column of BraTS ids of one year: ``BraTS_2017_subject_ID``, ``BraTS2021``, ``BraTS 2023 ID``,
#: ``BraTS21``, ...
_ID_COLUMN = re.compile(r"^\s*brats[\s_-]*(?:20)?(1[2-9]|2\d)(?![0-9])", re.IGNORECASE)
#: Cells that mean "no id in this release".
_NO_ID = frozenset({"", "na", "n/a", "nan", "none", "null", "-", "--"})
#: A mapping table larger than this is not read (BraTS's are a few hundred kB).
MAX_TABLE_BYTES = 32 << 20


def mapping_tables(root: Path) -> list[tuple[str, ...]]:
    """Groups of ids naming one patient, from the mapping tables in the release folder.

    A mapping table is any ``*.csv`` directly in ``root`` whose header has at least two columns
    named like BraTS ids of a year (``BraTS_2018_subject_ID``, ``BraTS2021``, ``BraTS2023``,
    ...): BraTS 2020's ``name_mapping.csv``, BraTS 2021's ``BraTS21-17_Mapping.csv``, BraTS
    2023's tables saved as CSV. Each row gives one group: its ids in those columns, cells such
    as ``NA`` or empty left out, and ids that are not safe as file names skipped.

    Args:
        root: the release folder.

    Returns:
        The groups of two or more ids, in file and row order; empty without a readable table
        (the mapping only serves the check of pretrained teachers against the test set: a
        table that cannot be read is not one, see docs/foundation_teacher.md).
    """
    try:
        tables = sorted(p for p in root.glob("*.csv") if p.is_file())
    except OSError:
        return []
    groups: list[tuple[str, ...]] = []
    for path in tables:
        try:
            if path.stat().st_size > MAX_TABLE_BYTES:
                continue
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle)
                header = next(reader, [])
                columns = [i for i, name in enumerate(header) if _ID_COLUMN.match(name or "")]
                if len(columns) < 2:
                    continue
                for row in reader:
                    ids = tuple(dict.fromkeys(
                        cell for i in columns if i < len(row)
                        and (cell := row[i].strip()).lower() not in _NO_ID
                        and is_safe_case_id(cell)))
                    if len(ids) >= 2:
                        groups.append(ids)
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
    return groups


@hookimpl
def kdbench_register_datasets(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register the BraTS release reader."""
    registry.add(BratsRelease)

"""Tiny fake BraTS releases in every naming scheme, good and broken, for reader and check tests.

Each case is a 12x13x14 grid (not a cube, so that a swapped axis shows) with a 1 mm LPS affine
and a random but valid tumour whose canonical labels hold every value 0-3. Images carry their
modality in their intensities (t1 about 1000, t1ce 2000, t2 3000, flair 4000) so that a test can
tell which file holds which modality by reading it (:func:`modality_of`).
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from kdbench.cases import CORE, EDEMA, ENHANCING, LABEL_MAPS

SHAPE: tuple[int, int, int] = (12, 13, 14)
MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
BASE: dict[str, int] = {"t1": 1000, "t1ce": 2000, "t2": 3000, "flair": 4000}
SCHEMES: tuple[str, ...] = ("2018", "2019", "2020", "2021", "2023", "nnunet")
#: Scheme -> the layout its reader reports.
LAYOUTS: dict[str, str] = {"2018": "2018", "2019": "2018", "2020": "2019-2021",
                           "2021": "2019-2021", "2023": "2023", "nnunet": "nnunet"}
#: Folder of the fake nnU-Net dataset (inside the ``root`` given to :func:`make_release`).
NNUNET_FOLDER = "Dataset007_Fake"
#: Channels of the fake nnU-Net dataset, deliberately not in kdbench's order.
NNUNET_CHANNELS: dict[str, str] = {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"}
NNUNET_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                 "enhancing tumor": [3]}
SUFFIX_2021 = {m: m for m in MODALITIES}
SUFFIX_2023 = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
#: The BraTS 2020 file of case 355's segmentation (the last 2020 case gets it).
SEGM_QUIRK = "W39_1998.09.19_Segm.nii"
#: Broken case of :func:`make_bad_release` -> (suffix of the broken file or None for the
#: folder, keyword of its problem).
BAD_CASES: dict[str, tuple[str | None, str]] = {
    "BraTS2021_01000": ("t2", "missing t2"),
    "BraTS2021_01001": ("flair", "unreadable"),
    "BraTS2021_01002": ("t1", "shape"),
    "BraTS2021_01003": ("t1ce", "affine"),
    "BraTS2021_01004": ("flair", "NaN"),
    "BraTS2021_01005": ("t2", "infinite"),
    "BraTS2021_01006": ("seg", "label values 3"),
    "BraTS2021_01007": ("t1", "4D"),
    "BraTS2021_01008": ("seg", "non-integer"),
    "BraTS2021_01009": ("seg", "missing segmentation"),
    "BraTS2021_é01": (None, "not safe"),
}


def case_ids(scheme: str, n_cases: int = 3) -> list[str]:
    """The case ids :func:`make_release` writes, in writing order.

    Args:
        scheme: one of :data:`SCHEMES`.
        n_cases: number of cases.

    Returns:
        The ids.
    """
    ids = []
    for i in range(n_cases):
        hgg = grade(scheme, i) != "LGG"
        if scheme in ("2018", "2019"):
            prefix = "Brats18" if scheme == "2018" else "BraTS19"
            ids.append(f"{prefix}_2013_{i}_1" if hgg else f"{prefix}_TCIA10_{i:03d}_1")
        elif scheme == "2020":
            ids.append(f"BraTS20_Training_{i + 1:03d}")
        elif scheme == "2023":
            ids.append(f"BraTS-GLI-{i:05d}-000")
        else:
            ids.append(f"BraTS2021_{i:05d}")
    return ids


def grade(scheme: str, index: int) -> str | None:
    """The grade of case ``index`` (2018, 2019 and 2020 only): every third case is LGG."""
    if scheme not in ("2018", "2019", "2020"):
        return None
    return "LGG" if index % 3 == 2 else "HGG"


def expected_grades(scheme: str, n_cases: int = 3) -> dict[str, str]:
    """Case id -> grade of a release of ``scheme`` (empty for schemes without grades)."""
    return {c: g for i, c in enumerate(case_ids(scheme, n_cases))
            if (g := grade(scheme, i)) is not None}


def expected_label(case_id: str, seed: int = 0) -> np.ndarray:
    """The canonical label volume (0 background, 1 edema, 2 core, 3 enhancing) of a case.

    Args:
        case_id: the case id (the volume depends on it and on ``seed`` only).
        seed: the release's seed.

    Returns:
        A uint8 array of :data:`SHAPE` holding every value 0-3.
    """
    rng = np.random.default_rng([seed, zlib.crc32(case_id.encode())])
    centre = rng.uniform(4.5, np.asarray(SHAPE) - 4.5)
    radius = rng.uniform(3.5, 4.5)
    grid = np.indices(SHAPE, dtype=np.float64)
    dist = np.sqrt(sum((grid[a] - centre[a]) ** 2 for a in range(3)))
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[dist < radius] = EDEMA
    label[dist < 0.7 * radius] = ENHANCING
    label[dist < 0.35 * radius] = CORE
    # Irregular edges: some edema voxels become core, as infiltration does.
    label[(label == EDEMA) & (rng.random(SHAPE) < 0.1)] = CORE
    return label


def to_source(label: np.ndarray, convention: str) -> np.ndarray:
    """Canonical labels -> the values of a release's convention (a key of LABEL_MAPS)."""
    lut = np.zeros(4, dtype=np.uint8)
    for source, canonical in LABEL_MAPS[convention].items():
        lut[canonical] = source
    return lut[label]


def image(modality: str, case_id: str, label: np.ndarray, seed: int = 0) -> np.ndarray:
    """An int16 image whose intensities name its modality (see :func:`modality_of`)."""
    rng = np.random.default_rng([seed, zlib.crc32(f"{case_id}/{modality}".encode())])
    noise = rng.integers(0, 100, SHAPE)
    return (BASE[modality] + noise + 100 * label.astype(np.int64)).astype(np.int16)


def modality_of(path: Path) -> str:
    """The modality an image written by this factory holds, read from its intensities."""
    code = int(np.median(np.asanyarray(nib.load(path).dataobj))) // 1000
    return {v // 1000: k for k, v in BASE.items()}[code]


def affine(shift: float = 0.0) -> np.ndarray:
    """A 1 mm LPS affine with an off-centre origin (``shift`` mm added along x)."""
    out = np.diag([-1.0, -1.0, 1.0, 1.0])
    out[:3, 3] = [6.0 + shift, 6.5, -7.0]
    return out


def save(path: Path, data: np.ndarray, aff: np.ndarray | None = None) -> Path:
    """Write ``data`` as NIfTI-1 (``.nii`` or ``.nii.gz`` from the name)."""
    nib.save(nib.Nifti1Image(data, affine() if aff is None else aff), path)
    return path


def write_case(folder: Path, cid: str, sep: str, suffixes: dict[str, str], convention: str,
               seed: int, *, endings: dict[str, str] | None = None,
               seg_name: str | None = None) -> dict[str, Path]:
    """Write one BraTS case folder; return suffix -> file.

    Args:
        folder: the case folder (created).
        cid: the case id.
        sep: ``_`` (2018-2021) or ``-`` (2023).
        suffixes: modality -> file suffix.
        convention: label convention of the release.
        seed: the release's seed.
        endings: suffix -> file ending when not ``.nii.gz``.
        seg_name: a file name for the segmentation other than ``<cid><sep>seg.nii.gz``.

    Returns:
        The files written, keyed by suffix (``"seg"`` for the label).
    """
    folder.mkdir(parents=True)
    endings = endings or {}
    label = expected_label(cid, seed)
    files = {}
    for modality, suffix in suffixes.items():
        name = f"{cid}{sep}{suffix}{endings.get(suffix, '.nii.gz')}"
        files[suffix] = save(folder / name, image(modality, cid, label, seed))
    seg = seg_name or f"{cid}{sep}seg{endings.get('seg', '.nii.gz')}"
    files["seg"] = save(folder / seg, to_source(label, convention))
    return files


def make_release(root: Path, scheme: str, n_cases: int = 3, seed: int = 0) -> Path:
    """Write a fake release of ``scheme`` and return its folder.

    2018 and 2019 use HGG/LGG folders; 2020 ships ``name_mapping.csv``, a plain ``.nii`` FLAIR
    in its first case and :data:`SEGM_QUIRK` as the last case's segmentation; nnunet is
    ``root/Dataset007_Fake`` (``root`` itself when named ``DatasetXXX_Name``) in nnU-Net's
    BraTS region form with :data:`NNUNET_CHANNELS`.

    Args:
        root: the release folder (created; may exist empty).
        scheme: one of :data:`SCHEMES`.
        n_cases: number of cases.
        seed: random seed of the labels and images.

    Returns:
        The release folder.
    """
    dest = Path(root)
    if scheme == "nnunet" and not re.match(r"^Dataset\d{3}_", dest.name):
        dest = dest / NNUNET_FOLDER
    dest.mkdir(parents=True, exist_ok=True)
    ids = case_ids(scheme, n_cases)
    if scheme == "nnunet":
        return _write_nnunet(dest, ids, seed)
    for i, cid in enumerate(ids):
        if scheme in ("2018", "2019"):
            write_case(dest / grade(scheme, i) / cid, cid, "_", SUFFIX_2021, "brats2021", seed)
        elif scheme == "2023":
            write_case(dest / cid, cid, "-", SUFFIX_2023, "brats2023", seed)
        elif scheme == "2020":
            write_case(dest / cid, cid, "_", SUFFIX_2021, "brats2021", seed,
                       endings={"flair": ".nii"} if i == 0 else None,
                       seg_name=SEGM_QUIRK if i == n_cases - 1 and i > 0 else None)
        else:
            write_case(dest / cid, cid, "_", SUFFIX_2021, "brats2021", seed)
    if scheme == "2020":
        _write_name_mapping(dest, ids)
    return dest


def _write_name_mapping(dest: Path, ids: list[str]) -> None:
    """BraTS 2020's ``name_mapping.csv`` (same columns, older ids left as NA)."""
    columns = ["Grade", "BraTS_2017_subject_ID", "BraTS_2018_subject_ID",
               "TCGA_TCIA_subject_ID", "BraTS_2019_subject_ID", "BraTS_2020_subject_ID"]
    with (dest / "name_mapping.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i, cid in enumerate(ids):
            writer.writerow([grade("2020", i), "NA", "NA", "NA", "NA", cid])


def _write_nnunet(dest: Path, ids: list[str], seed: int) -> Path:
    """An nnU-Net v2 raw dataset in the BraTS region form."""
    (dest / "imagesTr").mkdir()
    (dest / "labelsTr").mkdir()
    by_name = {"FLAIR": "flair", "T1": "t1", "T1ce": "t1ce", "T2": "t2"}
    for cid in ids:
        label = expected_label(cid, seed)
        for index, name in NNUNET_CHANNELS.items():
            save(dest / "imagesTr" / f"{cid}_{int(index):04d}.nii.gz",
                 image(by_name[name], cid, label, seed))
        save(dest / "labelsTr" / f"{cid}.nii.gz", to_source(label, "canonical"))
    spec = {"channel_names": NNUNET_CHANNELS, "labels": NNUNET_LABELS,
            "regions_class_order": [1, 2, 3], "numTraining": len(ids),
            "file_ending": ".nii.gz", "name": "Fake"}
    (dest / "dataset.json").write_text(json.dumps(spec, indent=2))
    return dest


def make_bad_release(root: Path) -> tuple[Path, dict[str, str]]:
    """A 2021-layout release: three good cases and the broken ones of :data:`BAD_CASES`.

    Args:
        root: the release folder (created; may exist empty).

    Returns:
        The release folder, and broken case id -> keyword of its (single) problem.
    """
    dest = Path(root)
    dest.mkdir(parents=True, exist_ok=True)
    for cid in case_ids("2021", 3):
        write_case(dest / cid, cid, "_", SUFFIX_2021, "brats2021", 0)
    for cid in BAD_CASES:
        files = write_case(dest / cid, cid, "_", SUFFIX_2021, "brats2021", 0)
        _break(cid, files)
    return dest, {cid: keyword for cid, (_, keyword) in BAD_CASES.items()}


def _break(cid: str, files: dict[str, Path]) -> None:
    """Break one file of a good case the way :data:`BAD_CASES` says."""
    suffix, keyword = BAD_CASES[cid]
    if suffix is None:
        return  # the id itself is the problem
    path = files[suffix]
    label = expected_label(cid)
    if keyword.startswith("missing"):
        path.unlink()
    elif keyword == "unreadable":
        blob = path.read_bytes()
        path.write_bytes(blob[: len(blob) // 2])
    elif keyword == "shape":
        save(path, image("t1", cid, label)[:, :, :-1])
    elif keyword == "affine":
        save(path, image("t1ce", cid, label), affine(shift=2.0))
    elif keyword in ("NaN", "infinite"):
        data = image(suffix, cid, label).astype(np.float32)
        data[0, 0, :3] = np.nan if keyword == "NaN" else np.inf
        save(path, data)
    elif keyword == "label values 3":
        seg = to_source(label, "brats2021")
        seg[0, 0, 0] = 3
        save(path, seg)
    elif keyword == "4D":
        data = image("t1", cid, label)
        save(path, np.stack([data, data], axis=-1))
    elif keyword == "non-integer":
        seg = to_source(label, "brats2021").astype(np.float32)
        seg[0, 0, 0] = 1.5
        save(path, seg)


def make_bad_release_2018(root: Path) -> tuple[Path, dict[str, str]]:
    """A 2018-layout release whose first HGG case is also in LGG (a duplicate id).

    Args:
        root: the release folder (created; may exist empty).

    Returns:
        The release folder, and ``{duplicated id: "duplicate"}``.
    """
    dest = make_release(root, "2018", n_cases=3)
    dup = case_ids("2018", 3)[0]
    write_case(dest / "LGG" / dup, dup, "_", SUFFIX_2021, "brats2021", 0)
    return dest, {dup: "duplicate"}

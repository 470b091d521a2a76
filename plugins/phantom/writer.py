"""NIfTI output in the BraTS 2021 layout: deterministic bytes, atomic case folders, manifest.

Files are serialised by nibabel to an uncompressed NIfTI-1 byte string and gzip-compressed
here with ``mtime=0`` and no file name in the gzip header, so that identical arrays give
byte-identical ``.nii.gz`` files (nibabel's own writer stamps the current time).

Each case is written to a hidden ``.tmp-phantom-...`` folder inside the destination and
renamed to ``BraTS2021_NNNNN`` once its five files are complete, so an interrupted run never
leaves a case folder that looks complete. ``phantom.json`` is written last.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "phantom.json"
#: Marker of a generation in progress (holds the same identity as the final manifest).
PARTIAL = ".phantom-partial.json"
TMP_PREFIX = ".tmp-phantom-"
SUFFIXES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "seg")
#: The true labels of a phantom with annotation noise, beside the rater's ``seg`` (the
#: reference the test set is scored against; ``docs/phantom.md``).
REFERENCE = "seg_reference"


def suffixes(reference: bool) -> tuple[str, ...]:
    """The files of a case: the four images and ``seg``, and ``seg_reference`` with noise."""
    return (*SUFFIXES, REFERENCE) if reference else SUFFIXES


def case_id(index: int) -> str:
    """The BraTS 2021 case id of case ``index``, e.g. ``BraTS2021_00007``.

    Args:
        index: zero-based case number.

    Returns:
        The case id.
    """
    return f"BraTS2021_{index:05d}"


def brats_affine(shape: tuple[int, int, int], spacing: float) -> np.ndarray:
    """A BraTS-like affine: LPS voxel axes (``diag(-s, -s, s)``), volume centred on the origin.

    Args:
        shape: grid shape.
        spacing: isotropic voxel size in mm.

    Returns:
        The 4x4 voxel-to-RAS affine.
    """
    affine = np.diag([-spacing, -spacing, spacing, 1.0])
    half = (np.asarray(shape, dtype=np.float64) - 1) / 2 * spacing
    affine[:3, 3] = [half[0], half[1], -half[2]]
    return affine


def nifti_gz_bytes(data: np.ndarray, affine: np.ndarray) -> bytes:
    """Deterministic ``.nii.gz`` bytes of ``data`` with ``affine`` (sform and qform, mm units).

    Args:
        data: the voxel array; its dtype is kept (int16 images, uint8 labels).
        affine: 4x4 voxel-to-world affine.

    Returns:
        The gzip-compressed NIfTI-1 file contents.
    """
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=4, mtime=0)


def write_case(dest: Path, cid: str, arrays: dict[str, np.ndarray], affine: np.ndarray) -> dict:
    """Write one case folder atomically and return the sha256 of each file.

    Args:
        dest: the release folder.
        cid: the case id (folder name and file prefix).
        arrays: ``t1, t1ce, t2, flair, seg`` (and ``seg_reference``) arrays of one shape.
        affine: the shared affine.

    Returns:
        ``{"BraTS2021_00000/BraTS2021_00000_t1.nii.gz": sha256, ...}``.
    """
    tmp = dest / f"{TMP_PREFIX}{cid}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    digests = {}
    for suffix in suffixes(REFERENCE in arrays):
        name = f"{cid}_{suffix}.nii.gz"
        blob = nifti_gz_bytes(arrays[suffix], affine)
        (tmp / name).write_bytes(blob)
        digests[f"{cid}/{name}"] = hashlib.sha256(blob).hexdigest()
    final = dest / cid
    try:
        tmp.rename(final)
    except OSError:
        # Another process finished the same case first; its files are identical.
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_complete_case(dest, cid, REFERENCE in arrays):
            raise
    return digests


def is_complete_case(dest: Path, cid: str, reference: bool = False) -> bool:
    """Whether ``dest/cid`` holds its five files (six with ``reference``; case folders only
    appear when complete).

    Args:
        dest: the release folder.
        cid: the case id.
        reference: whether the case has true labels beside the annotation.

    Returns:
        True when every file exists.
    """
    return all((dest / cid / f"{cid}_{s}.nii.gz").is_file() for s in suffixes(reference))


def hash_case(dest: Path, cid: str, reference: bool = False) -> dict[str, str]:
    """sha256 of each file of an existing case, keyed like :func:`write_case`'s result.

    Args:
        dest: the release folder.
        cid: the case id.
        reference: whether the case has true labels beside the annotation.

    Returns:
        The digests.
    """
    out = {}
    for s in suffixes(reference):
        rel = f"{cid}/{cid}_{s}.nii.gz"
        out[rel] = hashlib.sha256((dest / rel).read_bytes()).hexdigest()
    return out


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when missing or unreadable.

    Args:
        path: the file.

    Returns:
        The parsed object, or None.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON atomically (temporary file, then rename).

    Args:
        path: the destination file.
        data: a JSON-serialisable object.
    """
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def remove_stale_tmp(dest: Path) -> None:
    """Remove leftover temporary folders and files of an interrupted run in ``dest``.

    Args:
        dest: the release folder.
    """
    for entry in dest.glob(f"{TMP_PREFIX}*"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)

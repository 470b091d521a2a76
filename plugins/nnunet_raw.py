"""The ``nnunet_raw`` dataset: an existing nnU-Net v2 raw dataset (``DatasetXXX_Name``).

Layout: ``dataset.json``, ``imagesTr/<case>_<XXXX><file_ending>`` (one file per channel) and
``labelsTr/<case><file_ending>``. Channels are mapped by their names in
``dataset.json["channel_names"]`` (T1/t1n, T1ce/T1Gd/t1c, T2/t2w, FLAIR/t2f), not by position.
Labels are accepted in nnU-Net's BraTS region form (whole tumor [1, 2, 3], tumor core [2, 3],
enhancing tumor [3]) or as plain labels named background / edema / necrotic (or non-enhancing)
/ enhancing whose values match one of :data:`kdbench.cases.LABEL_MAPS`.

Only file names and ``dataset.json`` are read here; :mod:`kdbench.data.integrity` reads the
voxels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdbench import Dataset, DatasetOptions, hookimpl
from kdbench.cases import (
    BACKGROUND,
    CORE,
    EDEMA,
    ENHANCING,
    LABEL_MAPS,
    CaseFiles,
    Problem,
    Release,
    is_safe_case_id,
)
from kdbench.modalities import MODALITIES

EXCLUDE = "or leave the case out with --exclude-bad"
LAYOUT = "nnunet"
#: The ``file_ending`` values read (nnU-Net also knows .png, .tif, .nrrd, ...: not volumes
#: kdbench checks with nibabel).
NIFTI_ENDINGS: tuple[str, ...] = (".nii.gz", ".nii")

#: Channel names (lower-cased, without spaces, '-' and '_') -> canonical modality.
CHANNELS: dict[str, str] = {
    "t1": "t1", "t1n": "t1", "t1w": "t1", "t1native": "t1",
    "t1ce": "t1ce", "t1gd": "t1ce", "t1c": "t1ce", "t1contrast": "t1ce", "t1post": "t1ce",
    "t2": "t2", "t2w": "t2",
    "flair": "flair", "t2f": "flair", "t2flair": "flair",
}
#: nnU-Net's BraTS regions (value sets) in ``regions_class_order`` (1, 2, 3).
REGION_FORM: tuple[frozenset[int], ...] = (
    frozenset({1, 2, 3}), frozenset({2, 3}), frozenset({3}),
)
LABELS_ACCEPTED = (
    "labels must be nnU-Net's BraTS regions ({'background': 0, 'whole tumor': [1, 2, 3], "
    "'tumor core': [2, 3], 'enhancing tumor': [3]} with regions_class_order [1, 2, 3]) or "
    "background/edema/necrotic/enhancing with the values 0/1/2/3 (canonical), 0/2/1/4 "
    "(BraTS 2018-2021) or 0/2/1/3 (BraTS 2023)"
)


class NnUNetRawDataset(Dataset):
    """An nnU-Net v2 raw dataset of BraTS (four channels, BraTS labels) used as a source."""

    name = "nnunet_raw"
    version = "1"

    @classmethod
    def detect(cls, root: Path) -> str | None:
        """``"nnunet"`` when ``root`` holds ``dataset.json`` and ``imagesTr``, else ``None``.

        Args:
            root: the folder given by the user.

        Returns:
            The layout name or ``None``.
        """
        root = Path(root)
        if (root / "dataset.json").is_file() and (root / "imagesTr").is_dir():
            return LAYOUT
        return None

    def read(self, root: Path, options: DatasetOptions) -> Release:
        """List the training cases of the raw dataset at ``root`` (file names only).

        Args:
            root: the ``DatasetXXX_Name`` folder.
            options: unused (no option).

        Returns:
            The release; problems (unreadable ``dataset.json``, channels or labels that are
            not BraTS's, missing files, unsafe ids) are in ``Release.problems``.
        """
        root = Path(root)
        try:
            spec = json.loads((root / "dataset.json").read_text())
            if not isinstance(spec, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            return _failed(root, f"dataset.json unreadable: {exc}",
                           "write a valid nnU-Net v2 dataset.json")
        channels, problem = map_channels(spec.get("channel_names"))
        if problem:
            return _failed(root, problem, "name the four channels T1, T1ce, T2 and FLAIR in "
                           "dataset.json channel_names")
        convention = label_convention(spec.get("labels"), spec.get("regions_class_order"))
        if convention is None:
            labels = json.dumps(spec.get("labels"))
            return _failed(root, f"labels {labels} are not a BraTS label layout kdbench knows",
                           LABELS_ACCEPTED)
        ending = spec.get("file_ending") or ".nii.gz"
        if ending not in NIFTI_ENDINGS:
            # Any other ending is either not NIfTI (kdbench reads volumes with nibabel) or, with
            # a '/', a pattern reaching outside imagesTr.
            return _failed(root, f"dataset.json file_ending {ending!r} is not a NIfTI ending "
                           f"({' or '.join(NIFTI_ENDINGS)})",
                           "convert the images to NIfTI and set file_ending to '.nii.gz'")
        return list_cases(root, channels, ending, convention)


def list_cases(root: Path, channels: Mapping[str, str], ending: str, convention: str) -> Release:
    """The cases of ``imagesTr`` and ``labelsTr``.

    Args:
        root: the dataset folder.
        channels: four-digit channel index -> canonical modality.
        ending: ``file_ending`` of ``dataset.json``.
        convention: the label convention.

    Returns:
        The release, cases sorted by id.
    """
    pattern = re.compile(rf"^(.+)_(\d{{4}}){re.escape(ending)}$")
    images: dict[str, dict[str, Path]] = {}
    for path in sorted((root / "imagesTr").iterdir()):
        match = pattern.match(path.name)
        if match and match.group(2) in channels:
            images.setdefault(match.group(1), {})[channels[match.group(2)]] = path
    labels_dir = root / "labelsTr"
    labels = {p.name[: -len(ending)]: p for p in sorted(labels_dir.glob(f"*{ending}"))
              if not p.name.startswith(".")} if labels_dir.is_dir() else {}
    by_modality = {m: k for k, m in channels.items()}
    cases, problems = [], []
    for cid in sorted(images.keys() | labels.keys()):
        if not is_safe_case_id(cid):
            problems.append(Problem(
                cid, root / "imagesTr", f"case id {cid!r} is not safe as a file name (ASCII "
                "letters, digits, '_', '.', '-' only)", f"rename its files, {EXCLUDE}"))
        found = images.get(cid, {})
        for modality in MODALITIES:
            if modality not in found:
                name = f"{cid}_{by_modality[modality]}{ending}"
                problems.append(Problem(cid, root / "imagesTr" / name,
                                        f"missing {modality} image {name}",
                                        f"add the file, {EXCLUDE}"))
        label = labels.get(cid)
        if label is None:
            problems.append(Problem(cid, labels_dir / f"{cid}{ending}",
                                    f"missing segmentation {cid}{ending}",
                                    f"add the segmentation, {EXCLUDE}"))
        ordered = {m: found[m] for m in MODALITIES if m in found}
        cases.append(CaseFiles(cid, ordered, label, {"source_id": cid}))
    if not cases:
        problems.append(Problem(None, None, f"no case found in {root / 'imagesTr'}",
                                f"add the images as imagesTr/<case>_0000{ending}"))
    return Release(root, LAYOUT, convention, cases, problems)


def map_channels(names: Any) -> tuple[dict[str, str], str | None]:
    """Channel index -> canonical modality from ``dataset.json["channel_names"]``.

    Args:
        names: ``{"0": "T1", "1": "T1ce", ...}``.

    Returns:
        The map with four-digit indices (``"0000"``), and a problem (or ``None``).
    """
    if not isinstance(names, dict) or not names:
        return {}, "dataset.json has no channel_names"
    channels: dict[str, str] = {}
    for index, name in names.items():
        key = re.sub(r"[\s_\-]", "", str(name)).lower()
        if key in CHANNELS and str(index).isdigit():
            channels[f"{int(index):04d}"] = CHANNELS[key]
    found = list(channels.values())
    twice = sorted({m for m in found if found.count(m) > 1})
    missing = [m for m in MODALITIES if m not in found]
    shown = ", ".join(f"{k}: {v}" for k, v in names.items())
    if twice:
        return {}, f"channel_names ({shown}) name {', '.join(twice)} twice"
    if missing:
        return {}, f"channel_names ({shown}) lack {', '.join(missing)}"
    return channels, None


def _role(name: str) -> int | None:
    """The canonical label a plain label's name stands for, if recognised."""
    key = name.lower()
    if key in ("background", "bg") or "background" in key:
        return BACKGROUND
    # "non-enhancing" holds "enhancing": look for the core names first.
    if any(w in key for w in ("necro", "non-enh", "nonenh", "non enh", "ncr", "net", "core")):
        return CORE
    if "edema" in key or "oedema" in key or key in ("ed",):
        return EDEMA
    if "enhanc" in key or key == "et":
        return ENHANCING
    return None


def label_convention(labels: Any, order: Any) -> str | None:
    """The :data:`LABEL_MAPS` key ``dataset.json``'s labels follow, or ``None``.

    Args:
        labels: ``dataset.json["labels"]``.
        order: ``dataset.json["regions_class_order"]`` (for the region form).

    Returns:
        The convention, or ``None`` when the labels are not an accepted BraTS layout.
    """
    if not isinstance(labels, dict):
        return None
    values = {str(k): v for k, v in labels.items()}
    try:
        regions = [frozenset(v) if isinstance(v, list) else frozenset([v])
                   for k, v in values.items() if _role(k) != BACKGROUND]
    except TypeError:  # a value that is neither a label nor a list of labels
        return None
    if any(isinstance(v, list) for v in values.values()):
        background = [v for k, v in values.items() if _role(k) == BACKGROUND]
        ok = (background == [0] and sorted(regions, key=len, reverse=True) == list(REGION_FORM)
              and list(order or []) == [1, 2, 3])
        return "canonical" if ok else None
    mapping: dict[int, int] = {}
    for name, value in values.items():
        role = _role(name)
        if role is None or not isinstance(value, int) or role in mapping.values():
            return None
        mapping[value] = role
    return next((k for k, m in LABEL_MAPS.items() if m == mapping), None)


def _failed(root: Path, problem: str, fix: str) -> Release:
    """A release with no case and one release-level problem."""
    return Release(root, LAYOUT, "canonical", [], [Problem(None, None, problem, fix)])


@hookimpl
def kdbench_register_datasets(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register the nnU-Net raw dataset reader."""
    registry.add(NnUNetRawDataset)

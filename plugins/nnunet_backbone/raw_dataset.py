"""Writing a checked release as an nnU-Net v2 raw dataset with BraTS region-based labels.

The layout is nnU-Net's (``imagesTr/<case>_<XXXX>.nii.gz``, ``labelsTr/<case>.nii.gz``,
``dataset.json`` written by nnU-Net's own ``generate_dataset_json``), with channels in kdbench's
canonical order and labels in kdbench's canonical (nnU-Net BraTS) convention, as nnU-Net trains
BraTS: regions whole tumour (1, 2, 3), tumour core (2, 3), enhancing tumour (3), with
``regions_class_order`` (1, 2, 3).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from kdbench.cases import BACKGROUND, CORE, EDEMA, ENHANCING, CaseFiles
from kdbench.modalities import MODALITIES

#: nnU-Net's channel names; "T1ce" etc. all get nnU-Net's default z-score normalisation.
CHANNEL_NAMES = {0: "T1", 1: "T1ce", 2: "T2", 3: "Flair"}
REGION_LABELS = {
    "background": BACKGROUND,
    "whole tumor": (EDEMA, CORE, ENHANCING),
    "tumor core": (CORE, ENHANCING),
    "enhancing tumor": (ENHANCING,),
}
REGIONS_CLASS_ORDER = (EDEMA, CORE, ENHANCING)
FILE_ENDING = ".nii.gz"


def _place_image(source: Path, target: Path) -> None:
    if source.name.endswith(FILE_ENDING):
        try:  # a hard link costs no space and no time, and cannot dangle
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return
    import nibabel as nib

    nib.save(nib.load(source), target)  # .nii -> .nii.gz: nnU-Net wants one file ending


def _write_label(source: Path, target: Path, label_map: Mapping[int, int]) -> None:
    import nibabel as nib
    import numpy as np

    image = nib.load(source)
    values = np.asanyarray(image.dataobj).astype(np.int64)
    lookup = np.zeros(max(label_map) + 1, dtype=np.uint8)
    for src, dst in label_map.items():
        lookup[src] = dst
    out = nib.Nifti1Image(lookup[values], image.affine, header=image.header)
    out.set_data_dtype(np.uint8)
    nib.save(out, target)


def write_raw_dataset(
    cases: list[CaseFiles], label_map: Mapping[int, int], dataset_dir: Path, description: str
) -> None:
    """Write ``cases`` as the nnU-Net raw dataset ``dataset_dir`` (``.../DatasetXXX_Name``).

    Args:
        cases: checked cases (every modality and the label present and consistent).
        label_map: source label value -> canonical value.
        dataset_dir: the dataset folder to create.
        description: recorded in ``dataset.json``.
    """
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    images, labels = dataset_dir / "imagesTr", dataset_dir / "labelsTr"
    images.mkdir(parents=True)
    labels.mkdir()
    for case in cases:
        for channel, modality in enumerate(MODALITIES):
            target = images / f"{case.case_id}_{channel:04d}{FILE_ENDING}"
            _place_image(case.images[modality], target)
        assert case.label is not None  # checked cases have labels
        _write_label(case.label, labels / f"{case.case_id}{FILE_ENDING}", label_map)
    generate_dataset_json(
        str(dataset_dir),
        channel_names=CHANNEL_NAMES,
        labels=REGION_LABELS,
        num_training_cases=len(cases),
        file_ending=FILE_ENDING,
        regions_class_order=REGIONS_CLASS_ORDER,
        description=description,
        converted_by="kdbench data prepare",
        license="see the source release",
    )

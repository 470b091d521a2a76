"""Voxel-overlap metrics of one region: Dice, sensitivity, specificity, volume.

All are computed from exact integer voxel counts (numpy), with the BraTS conventions for empty
regions fixed here once. Why not MONAI's ``compute_dice`` / ``get_confusion_matrix``: they
convert the masks to float32 tensors (a copy of the volume per call, ~0.2 s on a BraTS case,
counts rounded above 2**24 voxels), and ``get_confusion_matrix`` in MONAI 1.6 returns a wrong
matrix for boolean tensors (true positives 0). The tests check that these functions agree with
MONAI's on float inputs wherever MONAI defines a value.

Conventions (``P`` prediction, ``R`` reference, ``|.|`` voxel count):

=============  ======================  ================  ================  ===================
metric         formula                 P, R both empty   P empty, R not    R empty, P not
=============  ======================  ================  ================  ===================
dice           2|P∩R| / (|P| + |R|)    1                 0                 0
sensitivity    |P∩R| / |R|             1                 0                 0
specificity    |¬P∩¬R| / |¬R|          1 (formula)       formula (=1)      formula (<1)
=============  ======================  ================  ================  ===================

Specificity is undefined only when the reference fills the whole volume (``|¬R| = 0``): it is
then 1 (no background voxel could be mislabelled). Sensitivity 0 for an empty reference and a
non-empty prediction follows the BraTS 2023 evaluation (GaNDLF's formula, with the explicit
exception only for both masks empty).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Counts(NamedTuple):
    """Voxel counts of a prediction against a reference.

    Attributes:
        tp: voxels in both.
        fp: voxels in the prediction only.
        fn: voxels in the reference only.
        tn: voxels in neither.
    """

    tp: int
    fp: int
    fn: int
    tn: int


def counts(pred: np.ndarray, ref: np.ndarray) -> Counts:
    """The confusion counts of two boolean masks of the same shape.

    Args:
        pred: predicted mask.
        ref: reference mask.

    Returns:
        :class:`Counts` as Python ints.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    tp = int(np.count_nonzero(pred & ref))
    return Counts(tp=tp, fp=n_pred - tp, fn=n_ref - tp, tn=pred.size - n_pred - n_ref + tp)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient ``2|P∩R| / (|P| + |R|)``; 1 when both masks are empty.

    Args:
        pred: predicted boolean mask.
        ref: reference boolean mask.

    Returns:
        A value in [0, 1].
    """
    c = counts(pred, ref)
    denominator = 2 * c.tp + c.fp + c.fn
    return 1.0 if denominator == 0 else 2 * c.tp / denominator


def sensitivity(pred: np.ndarray, ref: np.ndarray) -> float:
    """True-positive rate ``|P∩R| / |R|``; 1 when both are empty, 0 when only ``R`` is.

    Args:
        pred: predicted boolean mask.
        ref: reference boolean mask.

    Returns:
        A value in [0, 1].
    """
    c = counts(pred, ref)
    if c.tp + c.fn == 0:
        return 1.0 if c.fp == 0 else 0.0
    return c.tp / (c.tp + c.fn)


def specificity(pred: np.ndarray, ref: np.ndarray) -> float:
    """True-negative rate ``|¬P∩¬R| / |¬R|``; 1 when the reference has no background voxel.

    Args:
        pred: predicted boolean mask.
        ref: reference boolean mask.

    Returns:
        A value in [0, 1].
    """
    c = counts(pred, ref)
    return 1.0 if c.tn + c.fp == 0 else c.tn / (c.tn + c.fp)


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a mask in millilitres (cm³): voxel count × voxel volume (mm³) / 1000.

    Args:
        mask: boolean mask.
        spacing: voxel size in mm along each axis of ``mask``.

    Returns:
        The volume (0 for an empty mask).
    """
    if len(spacing) != mask.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} values for a "
                         f"{mask.ndim}-D mask")
    return int(np.count_nonzero(mask)) * math.prod(float(s) for s in spacing) / 1000.0

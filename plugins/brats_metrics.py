"""The BraTS metrics: Dice, HD95 (two definitions), sensitivity, specificity and volumes.

Each metric scores one region (WT, TC or ET) of one case: ``compute(pred, ref, spacing)``
takes two boolean masks of the same shape and the voxel size in mm, and returns a float. The
conventions for empty regions are the BraTS ones (docs/metrics.md). The computations live in
:mod:`kdbench.metrics` and are imported on first use, so loading this plugin stays light.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdbench import Metric, hookimpl

_EMPTY = "both masks empty: {both}; exactly one empty: {one}"


class BratsMetric(Metric):
    """Shared base of the BraTS region metrics (not registered itself); the declaration
    (``unit``, ``higher_is_better``, ``definition``, ``compute``) is :class:`kdbench.Metric`'s."""


class Dice(BratsMetric):
    """Dice coefficient of a region."""

    name = "dice"
    version = "1"
    higher_is_better = True
    definition = "2|P∩R| / (|P|+|R|) over voxels; " + _EMPTY.format(both="1", one="0")

    def compute(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
        """Dice of ``pred`` against ``ref``."""
        from kdbench.metrics.overlap import dice

        return dice(pred, ref)


class Hd95(BratsMetric):
    """95th-percentile Hausdorff distance, BraTS definition (pooled distances)."""

    name = "hd95"
    version = "1"
    unit = "mm"
    higher_is_better = False
    definition = (
        "BraTS/panoptica HD95: 95th percentile (linear) of the POOLED distances from each "
        "surface voxel of P to the surface of R and of R to P, in mm with the voxel spacing; "
        "surface = mask minus its erosion by the face-connected cross; "
        + _EMPTY.format(both="0", one="373.13 mm")
    )

    def compute(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
        """Pooled HD95 of ``pred`` against ``ref`` in mm."""
        from kdbench.metrics.surface import hd95_pooled

        return hd95_pooled(pred, ref, spacing)


class Hd95Monai(BratsMetric):
    """95th-percentile Hausdorff distance, MONAI definition (max of the directed ones)."""

    name = "hd95_monai"
    version = "1"
    unit = "mm"
    higher_is_better = False
    definition = (
        "MONAI HD95 (HausdorffDistanceMetric(percentile=95)): the LARGER of the two directed "
        "95th percentiles (P to R, R to P) of the surface distances, in mm with the voxel "
        "spacing; surfaces as for hd95; " + _EMPTY.format(both="0", one="373.13 mm")
    )

    def compute(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
        """Max-of-directed HD95 of ``pred`` against ``ref`` in mm."""
        from kdbench.metrics.surface import hd95_max_directed

        return hd95_max_directed(pred, ref, spacing)


class Sensitivity(BratsMetric):
    """Sensitivity (true-positive rate) of a region."""

    name = "sensitivity"
    version = "1"
    higher_is_better = True
    definition = ("|P∩R| / |R| over voxels; both empty: 1; R empty, P not: 0; "
                  "P empty, R not: 0")

    def compute(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
        """Sensitivity of ``pred`` against ``ref``."""
        from kdbench.metrics.overlap import sensitivity

        return sensitivity(pred, ref)


class Specificity(BratsMetric):
    """Specificity (true-negative rate) of a region."""

    name = "specificity"
    version = "1"
    higher_is_better = True
    definition = ("|not P ∩ not R| / |not R| over all voxels of the volume; 1 when R fills "
                  "the volume; empty masks need no exception")

    def compute(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
        """Specificity of ``pred`` against ``ref``."""
        from kdbench.metrics.overlap import specificity

        return specificity(pred, ref)


class VolumePred(BratsMetric):
    """Volume of the predicted region in mL."""

    name = "volume_pred"
    version = "1"
    unit = "mL"
    definition = "|P| × voxel volume (product of the spacing, mm³) / 1000; 0 when P is empty"

    def compute(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
        """Volume of ``pred`` in mL."""
        from kdbench.metrics.overlap import volume_ml

        return volume_ml(pred, spacing)


class VolumeRef(BratsMetric):
    """Volume of the reference region in mL."""

    name = "volume_ref"
    version = "1"
    unit = "mL"
    definition = "|R| × voxel volume (product of the spacing, mm³) / 1000; 0 when R is empty"

    def compute(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
        """Volume of ``ref`` in mL."""
        from kdbench.metrics.overlap import volume_ml

        return volume_ml(ref, spacing)


METRICS: tuple[type[BratsMetric], ...] = (
    Dice, Hd95, Hd95Monai, Sensitivity, Specificity, VolumePred, VolumeRef,
)


@hookimpl
def kdbench_register_metrics(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register the BraTS metrics."""
    for cls in METRICS:
        registry.add(cls)

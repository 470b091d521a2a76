"""Evaluation metrics: BraTS regions, overlap and surface-distance metrics, and scoring.

- :mod:`kdbench.metrics.regions`: label conventions -> canonical labels -> WT/TC/ET masks;
- :mod:`kdbench.metrics.overlap`: Dice, sensitivity, specificity, volume (exact counts);
- :mod:`kdbench.metrics.surface`: surface distances (MONAI) and the two HD95 definitions;
- :mod:`kdbench.metrics.scoring`: ``score_case``, ``score_files``, ``summarize``,
  ``metric_classes``.

The metric *plugins* (``dice``, ``hd95``, ...) are in ``kdbench_plugins.brats_metrics``; they
call these functions. Importing this package imports numpy only; MONAI, torch, nibabel and
pandas are imported by the functions that need them. docs/metrics.md has every definition.
"""

from kdbench.metrics.scoring import (
    describe_metrics,
    metric_classes,
    score_case,
    score_files,
    summarize,
)

__all__ = ["describe_metrics", "metric_classes", "score_case", "score_files", "summarize"]

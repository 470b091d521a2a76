"""Dice, sensitivity, specificity and volumes: MONAI agreement, hand cases, empty conventions.

Also checks every registered BraTS metric plugin on every empty-region case.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from kdbench.metrics.overlap import counts, dice, sensitivity, specificity, volume_ml
from kdbench.metrics.surface import EMPTY_HD95_MM
from kdbench_plugins.brats_metrics import METRICS, BratsMetric

SHAPE = (40, 40, 40)


def blob(seed: int) -> np.ndarray:
    smooth = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=SHAPE), 3.0)
    return smooth > 1.2 * smooth.std()


PAIRS = [(blob(1), blob(2)), (blob(3), blob(3) | blob(4)), (blob(5), blob(5))]


@pytest.mark.parametrize("pair", range(len(PAIRS)))
def test_overlap_agrees_with_monai(pair):
    import torch
    from monai.metrics import compute_confusion_matrix_metric, compute_dice, get_confusion_matrix

    pred, ref = PAIRS[pair]
    # MONAI 1.6 needs float masks: with bool tensors get_confusion_matrix reports 0 TP.
    p, r = (torch.as_tensor(m)[None, None].float() for m in (pred, ref))
    assert dice(pred, ref) == pytest.approx(float(compute_dice(p, r, include_background=True)),
                                            rel=1e-6)
    matrix = get_confusion_matrix(p, r, include_background=True)
    for name, fn in (("sensitivity", sensitivity), ("specificity", specificity)):
        expected = float(compute_confusion_matrix_metric(name, matrix))
        assert fn(pred, ref) == pytest.approx(expected, rel=1e-6)


def test_hand_computed_counts():
    pred = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    ref = np.array([0, 1, 1, 1, 1, 0, 0, 0], dtype=bool)
    assert counts(pred, ref) == (2, 1, 2, 3)
    assert dice(pred, ref) == pytest.approx(4 / 7)
    assert sensitivity(pred, ref) == pytest.approx(2 / 4)
    assert specificity(pred, ref) == pytest.approx(3 / 4)


def test_volume_in_millilitres_uses_spacing():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[:10, :10, :10] = True
    assert volume_ml(mask, (1.0, 1.0, 1.0)) == pytest.approx(1.0)
    assert volume_ml(mask, (0.5, 1.0, 3.0)) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="spacing"):
        volume_ml(mask, (1.0, 1.0))


SPACING = (1.0, 1.0, 2.0)
EMPTY = np.zeros(SHAPE, dtype=bool)
FULL = blob(1)
FULL_ML = int(FULL.sum()) * 2.0 / 1000
#: metric -> (both empty, prediction empty, reference empty): every convention, explicitly.
EXPECTED = {
    "dice": (1.0, 0.0, 0.0),
    "hd95": (0.0, EMPTY_HD95_MM, EMPTY_HD95_MM),
    "hd95_monai": (0.0, EMPTY_HD95_MM, EMPTY_HD95_MM),
    "sensitivity": (1.0, 0.0, 0.0),
    "specificity": (1.0, 1.0, 1 - FULL.sum() / FULL.size),
    "volume_pred": (0.0, 0.0, FULL_ML),
    "volume_ref": (0.0, FULL_ML, 0.0),
}


def test_every_builtin_metric_has_expectations():
    assert {m.name for m in METRICS} == set(EXPECTED)


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_empty_region_conventions(metric):
    both, pred_empty, ref_empty = EXPECTED[metric.name]
    m = metric()
    assert m.compute(EMPTY, EMPTY, SPACING) == pytest.approx(both)
    assert m.compute(EMPTY, FULL, SPACING) == pytest.approx(pred_empty)
    assert m.compute(FULL, EMPTY, SPACING) == pytest.approx(ref_empty)


def test_specificity_when_the_reference_fills_the_volume():
    whole = np.ones((4, 4, 4), dtype=bool)
    assert specificity(whole, whole) == 1.0
    assert specificity(np.zeros_like(whole), whole) == 1.0


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_declarations(metric):
    assert issubclass(metric, BratsMetric)
    assert metric.definition and metric.description()
    assert metric.higher_is_better in (True, False, None)
    described = metric.describe()
    assert described["definition"] == metric.definition and described["unit"] == metric.unit


def test_registered_through_the_entry_point(registry):
    assert {m.name for m in METRICS} <= set(registry.metrics.names())
    assert registry.metrics.entry("hd95").plugin == "brats_metrics"
    assert "POOLED" in registry.metrics.get("hd95").definition
    assert "LARGER" in registry.metrics.get("hd95_monai").definition

"""The fast paths of scoring leave every value unchanged: the crop to the union bounding box
before surface distances, and the one-table label lookup.

References: the MedPy-style HD95 of the scoring benchmark (whole-volume scipy distance
transforms, no crop) and Dice from plain counts; for labels, numpy's ``isin`` per label value.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from helpers import ROOT

from kdbench.metrics.regions import to_canonical
from kdbench.metrics.scoring import score_case
from kdbench.metrics.surface import crop_to_union
from kdbench_plugins.brats_metrics import Dice, Hd95


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "scoring_benchmark", ROOT / "benchmarks" / "scoring_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
def test_case_scores_equal_the_whole_volume_baseline(dtype):
    bench = _benchmark()
    pred, ref = bench.make_case((64, 60, 40), seed=3)
    # a prediction touching the volume's border, far from the tumour: the union box spans both
    pred[:3, :4, 30:] = 4
    pred, ref = pred.astype(dtype), ref.astype(dtype)
    rows = score_case(pred, ref, (1.0, 1.0, 1.0), [Dice(), Hd95()], "brats2021")
    ours = {(r["region"], r["metric"]): r["value"] for r in rows}
    baseline = bench.score_baseline(pred, ref)
    assert ours.keys() == baseline.keys()
    for key, value in baseline.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key
    assert ours[("ET", "hd95")] > 20  # the far prediction counts


def test_crop_keeps_a_background_margin_and_every_voxel():
    pred = np.zeros((20, 20, 20), dtype=bool)
    ref = np.zeros_like(pred)
    pred[0, 5, 5] = ref[10:12, 15, 19] = True
    p, r = crop_to_union(pred, ref)
    assert p.shape == r.shape == (12 + 2, 11 + 2, 15 + 2)
    assert p.sum() == 1 and r.sum() == 2
    for mask in (p, r):  # one background voxel all round
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                    or mask[:, :, 0].any() or mask[:, :, -1].any())


@pytest.mark.parametrize("convention,values", [("brats2021", (0, 1, 2, 4)),
                                               ("brats2023", (0, 1, 2, 3)),
                                               ("canonical", (0, 1, 2, 3))])
def test_label_lookup_equals_per_value_mapping(convention, values):
    from kdbench.cases import LABEL_MAPS

    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.int16, np.uint16, np.float32):
        labels = rng.choice(values, size=(9, 8, 7)).astype(dtype)
        expected = np.zeros(labels.shape, dtype=np.uint8)
        for source, canonical in LABEL_MAPS[convention].items():
            expected[np.isin(labels, [source])] = canonical
        out = to_canonical(labels, convention)
        assert out.dtype == np.uint8 and np.array_equal(out, expected), dtype

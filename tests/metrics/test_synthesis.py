"""Synthesis metrics: hand-computed MAE and PSNR, SSIM against MONAI's independent SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdbench.metrics.synthesis import normalise, synthesis_scores


def _brain(shape=(24, 24, 24)):
    z, y, x = np.indices(shape)
    centre = (np.array(shape) - 1) / 2
    return ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) < 10**2


def test_identical_images_score_perfectly():
    rng = np.random.default_rng(0)
    mask = _brain()
    real = np.where(mask, rng.normal(500, 100, mask.shape), 0)
    scores = synthesis_scores(real.copy(), real, mask)
    assert scores["mae"] == 0 and scores["psnr"] == float("inf")
    assert scores["ssim"] == pytest.approx(1.0)


def test_mae_and_psnr_by_hand():
    """Real: half the brain at 0, half at 100 (percentiles 0.5/99.5 give 0 and 100, so the
    normalised values are 0 and 1). Synthesised: everything 10 too high (0.1 after
    normalisation, clipped at 1): |error| is 0.1 on the low half and 0 on the high half."""
    mask = np.zeros((12, 12, 12), dtype=bool)
    mask[:, :, :6] = True
    real = np.zeros((12, 12, 12))
    real[:6, :, :6] = 100.0  # half of the brain voxels
    synth = real + 10.0
    scores = synthesis_scores(synth, real, mask)
    assert scores["mae"] == pytest.approx(0.05)  # half at 0.1, half at 0
    assert scores["psnr"] == pytest.approx(10 * np.log10(1 / 0.005))  # MSE = (0.01 + 0) / 2
    np.testing.assert_allclose(normalise(real, real, mask)[mask].max(), 1.0)


def test_ssim_matches_monai_away_from_the_border():
    """MONAI's SSIM (11-voxel Gaussian window, σ 1.5) averages over the valid region; ours,
    with a mask covering exactly that region, must agree."""
    from monai.metrics.regression import compute_ssim_and_cs

    rng = np.random.default_rng(1)
    shape = (30, 30, 30)
    real = rng.uniform(0, 1, shape)
    real[:, :, 10:] += 0.5  # some structure
    synth = real + rng.normal(0, 0.1, shape)
    mask = np.zeros(shape, dtype=bool)
    mask[5:-5, 5:-5, 5:-5] = True  # the centres of full 11-voxel windows
    ours = synthesis_scores(synth, real, mask)["ssim"]
    real_n, synth_n = normalise(real, real, mask), normalise(synth, real, mask)
    ssim_map, _ = compute_ssim_and_cs(
        torch.from_numpy(synth_n)[None, None], torch.from_numpy(real_n)[None, None],
        spatial_dims=3, kernel_size=(11, 11, 11), kernel_sigma=(1.5, 1.5, 1.5), data_range=1.0)
    assert ssim_map.shape[2:] == (20, 20, 20)
    assert ours == pytest.approx(float(ssim_map.mean()), abs=2e-3)
    assert 0 < ours < 1


def test_bad_inputs_are_named():
    mask = _brain((8, 8, 8))
    with pytest.raises(ValueError, match="shapes differ"):
        synthesis_scores(np.zeros((8, 8, 7)), np.zeros((8, 8, 8)), mask)
    with pytest.raises(ValueError, match="smaller than the 11-voxel SSIM window"):
        synthesis_scores(np.ones((8, 8, 8)), np.ones((8, 8, 8)), mask)
    with pytest.raises(ValueError, match="brain mask is empty"):
        synthesis_scores(np.zeros((8, 8, 8)), np.zeros((8, 8, 8)), np.zeros((8, 8, 8), bool))

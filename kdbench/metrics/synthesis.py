"""Image-synthesis quality of one modality inside the brain mask: MAE, PSNR, SSIM.

What a generator that completes missing modalities is scored with on the test set (the
segmentation side, the Dice of a frozen multi-modal segmenter fed the synthesised input, is the
generator Job's work). Definitions, fixed here once:

* **Normalisation.** Both volumes are mapped to [0, 1] by the *real* image's 0.5th and 99.5th
  percentiles inside the brain mask, then clipped. Raw MRI intensities have no common scale, so
  scores on raw values would not compare across cases or releases.
* **MAE** = mean |synth − real| over brain voxels; **PSNR** = 10·log10(1 / MSE) over brain
  voxels (data range 1), ``inf`` for identical images.
* **SSIM** (Wang et al., 2004): the per-voxel SSIM map with a Gaussian window (σ = 1.5, 11
  voxels wide, population covariances, K1 = 0.01, K2 = 0.03, data range 1) over the whole
  volume, from scikit-image's ``structural_similarity(full=True)``, averaged over brain voxels.
  Windows near the mask's edge see background (0 after skull stripping in both images), as in
  the BraTS 2023 synthesis challenge's masked SSIM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

PERCENTILES = (0.5, 99.5)
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # skimage's Gaussian window: 2 * int(3.5 * sigma + 0.5) + 1


def normalise(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` mapped to [0, 1] by ``reference``'s brain percentiles, clipped."""
    low, high = np.percentile(reference[mask], PERCENTILES)
    scale = high - low if high > low else 1.0
    return np.clip((image.astype(np.float64) - low) / scale, 0.0, 1.0)


def synthesis_scores(synthesised: np.ndarray, real: np.ndarray, mask: np.ndarray
                     ) -> dict[str, float]:
    """MAE, PSNR and SSIM of a synthesised volume against the real one, inside ``mask``.

    Raises:
        ValueError: shapes differ or the mask is empty (name the case in the caller's message).
    """
    from skimage.metrics import structural_similarity

    mask = np.asarray(mask, dtype=bool)
    if synthesised.shape != real.shape or real.shape != mask.shape:
        raise ValueError(f"shapes differ: synthesised {synthesised.shape}, real {real.shape}, "
                         f"mask {mask.shape}")
    if not mask.any():
        raise ValueError("the brain mask is empty")
    if min(real.shape) < SSIM_WINDOW:
        raise ValueError(f"volume {real.shape} is smaller than the {SSIM_WINDOW}-voxel SSIM "
                         "window on some axis")
    real_n = normalise(real, real, mask)
    synth_n = normalise(synthesised, real, mask)
    diff = synth_n[mask] - real_n[mask]
    mse = float(np.mean(diff**2))
    _, ssim_map = structural_similarity(
        real_n, synth_n, data_range=1.0, gaussian_weights=True, sigma=SSIM_SIGMA,
        use_sample_covariance=False, full=True)
    return {
        "mae": float(np.mean(np.abs(diff))),
        "psnr": float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse)),
        "ssim": float(np.mean(ssim_map[mask])),
    }


def synthesis_table(items: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                    modalities: Sequence[str]) -> pd.DataFrame:
    """Per-case synthesis scores: one row per (case, synthesised modality, metric).

    Args:
        items: ``(case, synthesised, real, mask)`` with one channel per modality in
            ``modalities`` (what :meth:`kdbench.Backbone.synthesise` yields).
        modalities: the synthesised modalities, in channel order.

    Returns:
        Columns ``case, region, metric, value`` (``region``: the modality).

    Raises:
        ValueError: naming the case, when its arrays cannot be scored.
    """
    import pandas as pd

    rows = []
    for case, synthesised, real, mask in items:
        for channel, modality in enumerate(modalities):
            try:
                scores = synthesis_scores(synthesised[channel], real[channel], mask)
            except ValueError as exc:
                raise ValueError(f"case {case}, modality {modality}: {exc}") from None
            rows += [{"case": case, "region": modality, "metric": metric, "value": value}
                     for metric, value in scores.items()]
    return pd.DataFrame(rows, columns=["case", "region", "metric", "value"])

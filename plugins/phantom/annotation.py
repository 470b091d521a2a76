"""Annotation noise: what a rater's segmentation of a phantom case looks like.

The phantom's labels are exact; real BraTS annotations are not (whole-tumour Dice between two
raters ≈ 0.85–0.9, Menze et al., IEEE TMI 2015). A rater's annotation is modelled as the true
label map warped by a smooth random displacement field (boundaries drawn a little off, the same
way for every region, so the regions stay nested) and, now and then, a small lobe of edema
left out. The training and validation cases read the annotation; the test cases are scored
against the true labels (``docs/phantom.md``, "Annotation noise").

Every draw comes from the case's own annotation stream (``SeedSequence([seed, case, 1])``), apart
from the streams of its anatomy, tumour and images: the images are the same with and without
noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdbench_plugins.phantom.fields import smooth_noise
from kdbench_plugins.phantom.tumour import EDEMA

#: The annotation stream's key (after the dataset seed and the case index).
STREAM = 1


@dataclass(frozen=True)
class LabelNoise:
    """The rater model.

    The defaults give a whole-tumour Dice of the annotation against the truth of 0.87 on
    48³ grids (0.85 on 64³; TC 0.80 / 0.75), BraTS's inter-rater range (``docs/phantom.md``).
    A displacement well under a voxel moves no boundary: on coarse grids the noise is coarse.

    Attributes:
        boundary_mm: RMS length of the displacement that moves each boundary (mm).
        correlation_mm: length over which the displacement varies (mm): how wide a bulge of a
            boundary drawn off is.
        lobe_drop_p: probability that the rater leaves out one lobe of edema.
        lobe_mm: radius of the edema left out (mm).
    """

    boundary_mm: float = 4.0
    correlation_mm: float = 15.0
    lobe_drop_p: float = 0.3
    lobe_mm: float = 10.0


def annotate(seg: np.ndarray, spacing_mm: float, noise: LabelNoise,
             rng: np.random.Generator) -> np.ndarray:
    """A rater's annotation of the true label map ``seg`` (uint8 BraTS labels).

    Args:
        seg: the true labels.
        spacing_mm: isotropic voxel size.
        noise: the rater model.
        rng: the case's annotation stream.

    Returns:
        The annotation, same shape and dtype.
    """
    from scipy import ndimage

    shape = seg.shape
    cells = [n * spacing_mm / noise.correlation_mm for n in shape]
    # per axis sd boundary / sqrt(3): the displacement's RMS length is boundary_mm
    scale = noise.boundary_mm / spacing_mm / np.sqrt(3.0)
    grid = np.indices(shape, dtype=np.float32)
    coords = [grid[a] + scale * smooth_noise(shape, cells, rng) for a in range(3)]
    out = ndimage.map_coordinates(seg, coords, order=0, mode="nearest").astype(seg.dtype)
    if rng.random() < noise.lobe_drop_p:
        out = _drop_lobe(out, spacing_mm, noise.lobe_mm, rng)
    return out


def _drop_lobe(seg: np.ndarray, spacing_mm: float, radius_mm: float,
               rng: np.random.Generator) -> np.ndarray:
    """Edema within ``radius_mm`` of a random point of the edema's outer border set to
    background (the core is never touched)."""
    from scipy import ndimage

    tumour = seg > 0
    border = (seg == EDEMA) & ~ndimage.binary_erosion(tumour)
    points = np.argwhere(border)
    if len(points) == 0:
        return seg
    centre = points[rng.integers(len(points))]
    grid = np.indices(seg.shape, dtype=np.float32)
    distance = np.sqrt(sum((grid[a] - centre[a]) ** 2 for a in range(3))) * spacing_mm
    out = seg.copy()
    out[(distance <= radius_mm) & (seg == EDEMA)] = 0
    return out

"""Tumour label geometry: glioma-like nested regions with BraTS labels.

A tumour is an irregular blob (an ellipsoid whose implicit surface is perturbed by smooth
noise) centred in the white matter of a random hemisphere:

* label 2, peritumoural edema: the outer, largest region; it spreads preferentially along
  white matter and stays out of CSF;
* the tumour core inside it, split into label 4, an enhancing rim of random thickness, around
  label 1, the necrotic / non-enhancing centre (absent in some "solid" tumours);
* about 15% of cases are low-grade-like: a core of label 1 only, with no enhancement, as in
  BraTS's LGG cases (which makes ET genuinely hard to call).

Sizes are drawn in millimetres (equivalent core radius 7-26 mm, edema margin 3-35 mm), so a
case looks the same at every grid resolution; the rim is kept at least 1.5 voxels thick so it
stays representable on coarse grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdbench_plugins.phantom.anatomy import Tissues
from kdbench_plugins.phantom.fields import random_rotation, smooth_noise

#: BraTS label values.
NCR, EDEMA, ET = 1, 2, 4

#: Probability that a case is low-grade-like (no enhancing tumour).
P_LOW_GRADE = 0.15
#: Probability that a high-grade case's core is solid enhancing tumour (no necrosis).
P_SOLID = 0.15


@dataclass(frozen=True)
class TumourSpec:
    """The random parameters of one case's tumour (kept for the manifest and for tests).

    Attributes:
        centre_vox: the core's centre, voxel coordinates.
        core_radius_mm: equivalent radius of the core ellipsoid.
        edema_margin_mm: how far edema extends beyond the core, on average.
        rim_mm: enhancing rim thickness; 0 when there is no enhancement, and the core radius
            for a solid (non-necrotic) enhancing core.
        low_grade: True for a non-enhancing, low-grade-like tumour.
    """

    centre_vox: tuple[float, float, float]
    core_radius_mm: float
    edema_margin_mm: float
    rim_mm: float
    low_grade: bool


def _pick_centre(tissues: Tissues, rng: np.random.Generator) -> np.ndarray:
    """A random voxel in the white matter of a random hemisphere (axis 0 is left-right)."""
    mid = (tissues.shape[0] - 1) / 2
    margin = 6.0 / tissues.spacing  # keep off the midline: gliomas rarely sit on it
    xs = np.arange(tissues.shape[0])[:, None, None]
    side = mid - xs > margin if rng.random() < 0.5 else xs - mid > margin
    candidates = np.argwhere((tissues.wm > 0.6) & side)
    if len(candidates) == 0:  # tiny or odd grids: fall back to any brain voxel
        candidates = np.argwhere(tissues.brain > 0.5)
    jitter = rng.uniform(-0.5, 0.5, 3)
    return candidates[rng.integers(len(candidates))].astype(np.float64) + jitter


def _blob(
    local: np.ndarray, radii_vox: np.ndarray, rot: np.ndarray, noise: np.ndarray, amp: float
) -> np.ndarray:
    """Implicit ellipsoid value (< 1 inside) at ``local`` offsets, perturbed by ``noise``."""
    q = np.tensordot(rot.T, local, axes=(1, 0)) / radii_vox.reshape(3, 1, 1, 1)
    return np.sqrt((q**2).sum(axis=0)) + amp * noise


def make_tumour(tissues: Tissues, rng: np.random.Generator) -> tuple[np.ndarray, TumourSpec]:
    """Draw one tumour and return its label map.

    Args:
        tissues: the case's (deformed) healthy tissue maps.
        rng: the case's tumour random generator.

    Returns:
        ``(seg, spec)``: a uint8 array of ``tissues.shape`` with labels {0, 1, 2, 4}, and the
        drawn parameters. Every tumour voxel lies inside the brain.
    """
    from scipy.ndimage import distance_transform_edt

    s = tissues.spacing
    shape = np.asarray(tissues.shape)
    low_grade = bool(rng.random() < P_LOW_GRADE)
    # Log-uniform core size: many small and mid-sized tumours, some very large.
    core_r = float(np.exp(rng.uniform(np.log(7.0), np.log(26.0))))
    # Edema grows with the core (BraTS whole tumours are typically 2-4x the core's volume).
    margin = float(rng.uniform(2.0, 8.0))
    margin += core_r * float(rng.uniform(0.1, 0.4 if low_grade else 1.0))
    edema_r = core_r + margin
    core_axes = core_r * rng.uniform(0.75, 1.3, 3)
    core_axes *= core_r / np.prod(core_axes) ** (1 / 3)  # keep the equivalent radius
    edema_axes = edema_r * rng.uniform(0.8, 1.25, 3)
    rot_core, rot_edema = random_rotation(rng), random_rotation(rng)
    centre = _pick_centre(tissues, rng)

    # Work in a box around the tumour only: cheaper than full-volume fields at 128^3.
    half = np.ceil(1.6 * edema_axes.max() / s) + 2
    lo = np.maximum(np.floor(centre - half), 0).astype(int)
    hi = np.minimum(np.ceil(centre + half) + 1, shape).astype(int)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    box_shape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    local = np.indices(box_shape, dtype=np.float32) + (lo - centre).reshape(3, 1, 1, 1)
    box_mm = np.asarray(box_shape) * s

    # Noise correlation length ~60% of the core radius gives lobulated, irregular outlines.
    core_noise = smooth_noise(box_shape, box_mm / (0.6 * core_r), rng)
    edema_noise = smooth_noise(box_shape, box_mm / max(0.5 * edema_r, 4.0), rng)
    core_amp = float(rng.uniform(0.12, 0.3))
    edema_amp = float(rng.uniform(0.15, 0.35))
    brain = tissues.brain[box] > 0.5
    wm, csf = tissues.wm[box], tissues.csf[box]

    core = (_blob(local, core_axes / s, rot_core, core_noise, core_amp) < 1.0) & brain
    if not core.any():  # the blob fell outside the brain: keep its central voxel at least
        middle = np.clip(np.round(centre - lo).astype(int), 0, np.asarray(box_shape) - 1)
        core[tuple(middle)] = True
        core &= brain
    # Vasogenic edema tracks white-matter fibres and is kept out of CSF spaces.
    edema_val = _blob(local, edema_axes / s, rot_edema, edema_noise, edema_amp) - 0.3 * (wm - 0.5)
    edema = (edema_val < 1.0) & brain & (csf < 0.5)

    seg_box = np.zeros(box_shape, dtype=np.uint8)
    seg_box[edema] = EDEMA
    if low_grade:
        rim = 0.0
        seg_box[core] = NCR
    else:
        depth = distance_transform_edt(core, sampling=s)
        solid = bool(rng.random() < P_SOLID)
        rim = core_r if solid else max(float(rng.uniform(2.0, 8.0)), 1.5 * s)
        # Necrosis is ragged: its border wanders by a fraction of the rim thickness.
        wobble = 0.35 * rim * smooth_noise(box_shape, box_mm / 8.0, rng)
        necrotic = core & (depth > rim + wobble) & (not solid)
        seg_box[core] = ET
        seg_box[necrotic] = NCR
    seg = np.zeros(tissues.shape, dtype=np.uint8)
    seg[box] = seg_box
    spec = TumourSpec(
        centre_vox=tuple(float(c) for c in centre),  # type: ignore[arg-type]
        core_radius_mm=core_r,
        edema_margin_mm=margin,
        rim_mm=rim,
        low_grade=low_grade,
    )
    return seg, spec

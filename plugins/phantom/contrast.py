"""Per-modality image formation: tissue intensities, partial volume, bias field, noise.

Each voxel's signal is the partial-volume mix of its tissue fractions times the tissue's
intensity in that modality (table :data:`INTENSITY`, relative to white matter). The table
is chosen so that each modality carries the information it carries in real glioma MRI:

* T1: WM > GM > CSF; tumour only slightly hypointense, edema barely different from white
  matter, so T1 alone is weak at every region;
* T1ce: T1 plus strong enhancement of the enhancing rim (label 4) and dark necrosis: the
  modality for ET and TC, blind to the extent of edema; cortical vessels and choroid plexus
  enhance too, so "bright" alone is not "tumour";
* T2: CSF brightest, GM > WM, edema and tumour hyperintense (close to CSF);
* FLAIR: T2-like with CSF suppressed: edema and tumour stand out, the modality for WT. The
  enhancing rim matches edema in T2 and FLAIR, so ET needs T1ce.

A low-grade-like tumour's core (label 1, non-enhancing tumour) uses the ``net`` row instead
of ``ncr``: T2/FLAIR-bright, not enhancing.

Then, per case and modality: partial-volume blur (a Gaussian point-spread function), a
smooth multiplicative bias field, a global scanner gain and offset, and Rician noise of 2-5%
of the white-matter intensity. Outside the (skull-stripped) brain the images are exactly 0,
and at least 1 inside, as in BraTS.
"""

from __future__ import annotations

import numpy as np

from kdbench_plugins.phantom.anatomy import Tissues
from kdbench_plugins.phantom.fields import gaussian, smooth_noise
from kdbench_plugins.phantom.tumour import EDEMA, ET, NCR

MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

#: Relative tissue intensities per modality (white matter = 1).
INTENSITY: dict[str, dict[str, float]] = {
    #        wm    gm    csf   edema  ncr   net   et    vessel
    "t1": dict(wm=1.0, gm=0.80, csf=0.35, edema=0.85, ncr=0.58, net=0.72, et=0.70, vessel=0.35),
    "t1ce": dict(wm=1.0, gm=0.80, csf=0.35, edema=0.85, ncr=0.50, net=0.74, et=1.60, vessel=1.40),
    "t2": dict(wm=1.0, gm=1.30, csf=2.20, edema=1.75, ncr=2.00, net=1.85, et=1.65, vessel=1.20),
    "flair": dict(wm=1.0, gm=1.20, csf=0.30, edema=1.80, ncr=1.35, net=1.75, et=1.70, vessel=0.5),
}

#: White-matter intensity of each modality before the per-case gain, in int16-style units.
BASE_LEVEL: dict[str, float] = {"t1": 700.0, "t1ce": 750.0, "t2": 450.0, "flair": 400.0}

#: Texture amplitude (relative standard deviation) of healthy tissue and of tumour.
HEALTHY_TEXTURE, TUMOUR_TEXTURE = 0.03, 0.10

#: Standard deviation of the Gaussian point-spread function, in voxels.
PSF_SIGMA = 0.5


def _label_fractions(seg: np.ndarray) -> dict[int, np.ndarray]:
    """Soft (partial-volume) fractions of each tumour label, blurred over about a voxel."""
    out = {lab: np.zeros(seg.shape, dtype=np.float32) for lab in (NCR, EDEMA, ET)}
    idx = np.argwhere(seg > 0)
    if len(idx) == 0:
        return out
    lo = np.maximum(idx.min(axis=0) - 3, 0)
    hi = np.minimum(idx.max(axis=0) + 4, seg.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    for lab in out:
        out[lab][box] = gaussian((seg[box] == lab).astype(np.float32), 0.35)
    return out


def _vessels(tissues: Tissues, rng: np.random.Generator) -> np.ndarray:
    """Fraction of enhancing vessels: thin tubes inside CSF spaces (sulci, choroid plexus)."""
    cells = np.asarray(tissues.shape) * tissues.spacing / 12.0
    # A tube is where two independent noise fields are both near zero.
    a = np.abs(smooth_noise(tissues.shape, cells, rng))
    b = np.abs(smooth_noise(tissues.shape, cells, rng))
    tube = np.clip(1.0 - np.maximum(a, b) / 0.25, 0.0, 1.0)
    return (tube * np.clip(tissues.csf * 1.5, 0.0, 1.0)).astype(np.float32)


def render(
    tissues: Tissues, seg: np.ndarray, low_grade: bool, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render the four modalities of one case.

    Args:
        tissues: the case's healthy tissue fractions.
        seg: the case's label map (0, 1, 2, 4).
        low_grade: whether label 1 is non-enhancing tumour (``net``) rather than necrosis.
        rng: the case's contrast random generator.

    Returns:
        ``(images, mask)``: int16 arrays keyed by modality (``t1, t1ce, t2, flair``), and the
        boolean brain mask outside which every image is 0.
    """
    shape = tissues.shape
    brain = tissues.brain
    mask = (brain > 0.5) | (seg > 0)
    labels = _label_fractions(seg)
    tumour = np.clip(labels[NCR] + labels[EDEMA] + labels[ET], 0.0, 1.0)
    # Inside the mask the tissues fill the voxel (BraTS masks are hard-edged).
    healthy_scale = (1.0 - tumour) / np.maximum(brain, 1e-3)
    fractions = {
        "wm": tissues.wm * healthy_scale,
        "gm": tissues.gm * healthy_scale,
        "csf": tissues.csf * healthy_scale,
        "edema": labels[EDEMA],
        "ncr": labels[NCR] if not low_grade else np.zeros(shape, np.float32),
        "net": labels[NCR] if low_grade else np.zeros(shape, np.float32),
        "et": labels[ET],
    }
    vessel = _vessels(tissues, rng)
    # Tissue microstructure shows in every modality: part of the texture is shared.
    cells = np.asarray(shape) * tissues.spacing / 10.0
    shared = smooth_noise(shape, cells, rng)
    maskf = mask.astype(np.float32)
    norm = np.maximum(gaussian(maskf, PSF_SIGMA), 1e-3)
    images: dict[str, np.ndarray] = {}
    for modality in MODALITIES:
        table = INTENSITY[modality]
        own = smooth_noise(shape, cells, rng)
        texture = (0.6 * shared + 0.8 * own).astype(np.float32)
        signal = np.zeros(shape, dtype=np.float32)
        for tissue, frac in fractions.items():
            signal += frac * table[tissue]
        healthy = fractions["wm"] + fractions["gm"] + fractions["csf"]
        signal *= 1.0 + texture * (HEALTHY_TEXTURE * healthy + TUMOUR_TEXTURE * tumour)
        signal = (1.0 - vessel) * signal + vessel * table["vessel"]
        # Point-spread function, renormalised at the brain edge so the rim is not darkened.
        signal = gaussian(signal * maskf, PSF_SIGMA) / norm
        amp = rng.uniform(0.04, 0.12)
        signal *= np.exp(amp * smooth_noise(shape, 1.5, rng))
        level = BASE_LEVEL[modality] * float(np.exp(rng.uniform(-0.5, 0.5)))
        sigma = rng.uniform(0.02, 0.05)
        real = signal + sigma * rng.standard_normal(shape, dtype=np.float32)
        imag = sigma * rng.standard_normal(shape, dtype=np.float32)
        magnitude = np.sqrt(real**2 + imag**2) * level + rng.uniform(0.0, 0.05) * level
        out = np.clip(np.rint(magnitude), 1, np.iinfo(np.int16).max).astype(np.int16)
        out[~mask] = 0
        images[modality] = out
    return images, mask

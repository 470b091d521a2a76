"""Healthy brain tissue maps: white matter, grey matter and CSF fractions on the phantom grid.

Two sources:

* ``mni``: the MNI ICBM152 2009c nonlinear symmetric template (T1, GM and WM probability
  maps) that nilearn's wheel ships under ``nilearn/datasets/data``. It is read with nibabel
  from that folder without importing nilearn (which is slow to import). CSF is the part of
  the skull-stripped brain that is neither GM nor WM (ventricles and sulci). The template's
  licence notice is kept in ``MNI_LICENSE.txt`` next to this file.
* ``procedural``: an ellipsoidal brain with a folded GM ribbon, sulcal CSF, lateral
  ventricles and deep grey nuclei, for machines without nilearn.

Both are brain-only (skull-stripped, as BraTS is) and stored in LPS voxel order (axis 0 runs
right to left, axis 1 anterior to posterior, axis 2 inferior to superior) to match the
BraTS-like affine ``diag(-s, -s, s)`` that the writer uses. The grid spacing ``s`` is
isotropic and chosen so that the brain fills about 82% of the longest side of ``shape``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from kdbench_plugins.phantom.fields import Shape, gaussian, random_warp_coords, smooth_noise, warp

#: Fraction of the longest axis the brain's bounding box spans (room for rotation/scaling).
FILL = 0.82

_MNI_NAME = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


@dataclass(frozen=True)
class Tissues:
    """Partial-volume fractions of healthy tissue on a voxel grid.

    Attributes:
        wm: white-matter fraction, float32 in [0, 1].
        gm: grey-matter fraction, float32 in [0, 1].
        csf: cerebrospinal-fluid fraction (ventricles, sulci), float32 in [0, 1].
        spacing: isotropic voxel size in mm.
        source: ``"mni"`` or ``"procedural"``.
    """

    wm: np.ndarray
    gm: np.ndarray
    csf: np.ndarray
    spacing: float
    source: str

    @property
    def brain(self) -> np.ndarray:
        """Brain fraction (sum of the three tissues), float32."""
        return self.wm + self.gm + self.csf

    @property
    def shape(self) -> Shape:
        """The grid shape."""
        return tuple(self.wm.shape)  # type: ignore[return-value]


def mni_paths() -> dict[str, Path] | None:
    """Paths of the MNI template files inside the installed nilearn, or None when absent.

    Returns:
        ``{"t1": ..., "gm": ..., "wm": ...}`` when all three files exist, else None.
    """
    try:
        spec = importlib.util.find_spec("nilearn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    paths = {k: data / _MNI_NAME.format(k) for k in ("t1", "gm", "wm")}
    return paths if all(p.is_file() for p in paths.values()) else None


@lru_cache(maxsize=1)
def _mni_full() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WM, GM and CSF fractions of the template at 1 mm, cropped to the brain, LPS order."""
    import nibabel as nib

    paths = mni_paths()
    if paths is None:
        raise FileNotFoundError("MNI template files not found in nilearn")
    vols = {k: np.asarray(nib.load(p).dataobj, dtype=np.float32) for k, p in paths.items()}
    brain = vols["t1"] > 0  # nilearn's converted T1 is already brain-masked
    wm = vols["wm"] / 255.0 * brain
    gm = vols["gm"] / 255.0 * brain
    csf = np.clip(brain - wm - gm, 0.0, 1.0)
    # The template's affine is RAS with positive steps; flipping axes 0 and 1 gives LPS order.
    idx = np.argwhere(brain)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    return tuple(np.ascontiguousarray(v[crop][::-1, ::-1, :]) for v in (wm, gm, csf))  # type: ignore[return-value]


def _fit_spacing(extent_mm: np.ndarray, shape: Shape) -> float:
    """Isotropic spacing (mm) at which a brain of ``extent_mm`` spans FILL of ``shape``."""
    return float(np.max(extent_mm / (FILL * np.asarray(shape, dtype=np.float64))))


@lru_cache(maxsize=8)
def mni_tissues(shape: Shape) -> Tissues:
    """The MNI template's tissue maps resampled to ``shape``, centred (cached per shape).

    Args:
        shape: output grid shape.

    Returns:
        The template's tissues at the isotropic spacing that makes the brain fit ``shape``.
    """
    full = _mni_full()
    extent = np.asarray(full[0].shape, dtype=np.float64)
    spacing = _fit_spacing(extent, shape)
    out_centre = (np.asarray(shape, dtype=np.float64) - 1) / 2
    src_centre = (extent - 1) / 2
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    coords = ((grid - out_centre[:, None]) * spacing + src_centre[:, None]).reshape(3, *shape)
    maps = []
    for vol in full:
        # Anti-alias before decimation so each voxel holds a true partial-volume fraction.
        smooth = gaussian(vol, 0.45 * spacing) if spacing > 1.2 else vol
        maps.append(np.clip(warp(smooth, coords), 0.0, 1.0))
    return Tissues(*maps, spacing=spacing, source="mni")


def _soft(x: np.ndarray, width: float) -> np.ndarray:
    """Logistic step of ``x`` over ``width`` (same units), float32."""
    return (1.0 / (1.0 + np.exp(-np.clip(x / width, -30, 30)))).astype(np.float32)


def _ellipsoid(p: np.ndarray, centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    """Approximate signed depth (mm, positive inside) of points ``p`` in an ellipsoid."""
    c = np.asarray(centre, dtype=np.float32).reshape(3, 1, 1, 1)
    r = np.asarray(radii, dtype=np.float32).reshape(3, 1, 1, 1)
    q = np.sqrt((((p - c) / r) ** 2).sum(axis=0))
    return (1.0 - q) * float(np.min(radii))


@lru_cache(maxsize=8)
def procedural_tissues(shape: Shape) -> Tissues:
    """A procedural brain: folded cortex, sulci, ventricles, deep grey nuclei (cached per shape).

    The random draws use a fixed internal seed: this is the "template" that every case then
    deforms, as the MNI template is.

    Args:
        shape: output grid shape.

    Returns:
        The tissue maps at the spacing that makes a 140 x 172 x 136 mm brain fit ``shape``.
    """
    rng = np.random.default_rng(20210)

    def noise(cells: float) -> np.ndarray:
        # Brains are nearly left-right symmetric: mirror the noise about the midline.
        field = smooth_noise(shape, cells, rng)
        return (field + field[::-1]) / np.sqrt(2.0)

    semi = np.array([70.0, 86.0, 68.0])  # LR, AP, IS semi-axes in mm, close to MNI's brain
    spacing = _fit_spacing(2 * semi, shape)
    centre = (np.asarray(shape, dtype=np.float32) - 1) / 2
    p = (np.indices(shape, dtype=np.float32) - centre.reshape(3, 1, 1, 1)) * spacing
    edge = 0.6 * spacing  # boundary width: about one voxel of partial volume
    # Outer surface: a lumpy ellipsoid, flattened below (the skull base).
    depth = _ellipsoid(p, (0, 0, 0), tuple(semi)) + 3.0 * noise(4)
    depth = np.minimum(depth, p[2] + 0.8 * semi[2])
    brain = _soft(depth, edge)
    # The cortex is ~3 mm thick but folded: at phantom resolutions it reads as a grey band
    # 8-20 mm deep whose inner border follows the gyri.
    ribbon = 12.0 + 3.5 * noise(12)
    wm_core = _soft(depth - ribbon, edge)
    # Sulci are thin sheets (zero level set of a noise field) cutting through the ribbon.
    sheet = np.abs(noise(12))
    sulci = _soft(0.12 - sheet, 0.04) * _soft(ribbon + 2.0 - depth, edge)
    surface_csf = _soft(1.5 - depth, edge)
    csf = np.maximum(sulci, surface_csf)
    # Lateral ventricles (butterfly-shaped pair) and a thin third ventricle.
    vent = np.zeros(shape, dtype=np.float32)
    for side in (-1.0, 1.0):
        bend = p.copy()
        bend[2] = p[2] - 0.004 * p[1] ** 2  # the frontal and occipital horns curve down
        vent = np.maximum(vent, _soft(_ellipsoid(bend, (side * 9, -4, 14), (6, 30, 9)), edge))
    vent = np.maximum(vent, _soft(_ellipsoid(p, (0, 0, 2), (1.5, 14, 8)), edge))
    csf = np.maximum(csf, vent)
    # Thalamus and basal ganglia: grey nuclei inside the white matter.
    nuclei = np.zeros(shape, dtype=np.float32)
    for side in (-1.0, 1.0):
        nuclei = np.maximum(nuclei, _soft(_ellipsoid(p, (side * 14, 6, 0), (9, 20, 12)), edge))
    csf = csf * brain
    wm = np.clip(wm_core * (1 - nuclei) * brain - csf, 0.0, 1.0)
    gm = np.clip(brain - wm - csf, 0.0, 1.0)
    # Drop the faint logistic tails so the background is exactly empty.
    keep = brain > 0.02
    return Tissues(wm * keep, gm * keep, csf * keep, spacing=spacing, source="procedural")


def deform(template: Tissues, rng: np.random.Generator) -> Tissues:
    """A per-case random smooth deformation of ``template``: rotation, scale and warp.

    Args:
        template: the tissue maps to deform.
        rng: the case's random generator.

    Returns:
        New tissue maps on the same grid; a few degrees of rotation, +-8% scale and a smooth
        displacement of about 2.5 mm make every case anatomically different.
    """
    disp_vox = 2.5 / template.spacing
    coords = random_warp_coords(template.shape, rng, 4.0, 0.08, disp_vox)
    maps = [np.clip(warp(v, coords), 0.0, 1.0) for v in (template.wm, template.gm, template.csf)]
    return Tissues(*maps, spacing=template.spacing, source=template.source)

"""Smooth random fields and warps shared by the anatomy, tumour and contrast models.

The fields are built separably (a coarse grid of Gaussian noise, upsampled axis by axis with
Gaussian interpolation weights), which costs a few tensor products instead of a 3-D
convolution or spline evaluation: a 128^3 field takes tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Shape = tuple[int, int, int]


def _weights(n: int, cells: float) -> np.ndarray:
    """Interpolation weights from a coarse noise grid to ``n`` output points along one axis."""
    # Two knots of padding on each side keep the variance stationary up to the volume edges.
    knots = np.arange(-2, int(np.ceil(cells)) + 3, dtype=np.float64)
    x = (np.arange(n, dtype=np.float64) + 0.5) / n * cells
    w = np.exp(-0.5 * ((x[:, None] - knots[None, :]) / 0.75) ** 2)
    # L2-normalised rows make every output value exactly unit-variance.
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
    return w


def smooth_noise(
    shape: Sequence[int], cells: float | Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """A stationary, unit-variance Gaussian random field, smooth on the scale ``shape/cells``.

    Args:
        shape: output shape (3 axes).
        cells: number of correlation lengths across each axis (a scalar or one per axis);
            small values give slowly varying fields (bias fields), large values fine texture.
        rng: the random generator to draw from.

    Returns:
        A float32 array of ``shape`` with mean 0 and standard deviation 1 at every voxel.
    """
    cells_t = [float(cells)] * len(shape) if np.isscalar(cells) else [float(c) for c in cells]
    mats = [
        _weights(int(n), max(c, 0.5)).astype(np.float32)
        for n, c in zip(shape, cells_t, strict=True)
    ]
    out = rng.standard_normal(tuple(m.shape[1] for m in mats), dtype=np.float32)
    for axis, mat in enumerate(mats):
        out = np.moveaxis(np.tensordot(mat, out, axes=(1, axis)), 0, axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def rotation(angles_rad: Sequence[float]) -> np.ndarray:
    """The 3x3 rotation matrix of successive rotations about the three axes.

    Args:
        angles_rad: rotation angles about axes 0, 1 and 2, in radians.

    Returns:
        A float64 orthonormal matrix.
    """
    mat = np.eye(3)
    for axis, angle in enumerate(angles_rad):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        rot = np.eye(3)
        rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
        mat = rot @ mat
    return mat


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation (QR of a Gaussian matrix, sign-corrected).

    Args:
        rng: the random generator to draw from.

    Returns:
        A 3x3 float64 rotation matrix.
    """
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_warp_coords(
    shape: Shape, rng: np.random.Generator, max_rot_deg: float, max_scale: float, disp_vox: float
) -> np.ndarray:
    """Source coordinates of a random small affine plus smooth displacement about the centre.

    Args:
        shape: the grid to sample on.
        rng: the random generator to draw from.
        max_rot_deg: largest rotation about each axis, in degrees.
        max_scale: largest relative change of scale per axis (0.08 for +-8%).
        disp_vox: standard deviation of the smooth displacement, in voxels.

    Returns:
        A float32 array (3, *shape) of coordinates for ``scipy.ndimage.map_coordinates``.
    """
    centre = (np.asarray(shape, dtype=np.float64) - 1) / 2
    rot = rotation(np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg, 3)))
    # Mostly a global size change with a little anisotropy, as heads differ.
    scale = (1 + rng.uniform(-max_scale, max_scale)) * (1 + rng.uniform(-0.03, 0.03, 3))
    mat = (rot * (1 / scale)[None, :]).astype(np.float32)
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1) - centre[:, None].astype(np.float32)
    src = mat @ grid + centre[:, None].astype(np.float32)
    src = src.reshape(3, *shape)
    for axis in range(3):
        src[axis] += disp_vox * smooth_noise(shape, 3.0, rng)
    return src


def warp(volume: np.ndarray, coords: np.ndarray, order: int = 1) -> np.ndarray:
    """Sample ``volume`` at ``coords`` (zero outside), as float32.

    Args:
        volume: the array to resample.
        coords: source coordinates, shape (3, *out_shape).
        order: spline order (1 = trilinear, which keeps tissue fractions within [0, 1]).

    Returns:
        The resampled float32 array of shape ``coords.shape[1:]``.
    """
    from scipy.ndimage import map_coordinates

    out = map_coordinates(volume, coords, order=order, mode="constant", cval=0.0, prefilter=False)
    return out.astype(np.float32, copy=False)


def gaussian(volume: np.ndarray, sigma: float | Sequence[float]) -> np.ndarray:
    """Gaussian blur (``scipy.ndimage.gaussian_filter``, zero padding), as float32.

    Args:
        volume: the array to blur.
        sigma: standard deviation in voxels (scalar or per axis).

    Returns:
        The blurred float32 array.
    """
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(volume.astype(np.float32, copy=False), sigma, mode="constant")

"""HD95 against an independent reference, both definitions, spacing, empty masks, devices.

The reference is written here without MONAI, the way MedPy and panoptica (the BraTS tooling)
compute it: surfaces = mask XOR its erosion by the face-connected cross, then scipy's dense
Euclidean distance transform of the other surface's complement, sampled at the surface voxels.
kdbench goes through MONAI's ``get_mask_edges`` and ``get_surface_distance`` (a KD-tree over
surface voxels on CPU), so the two paths share no distance code.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from kdbench.metrics.surface import (
    DEVICE_ENV,
    EMPTY_HD95_MM,
    hd95_max_directed,
    hd95_pooled,
    resolve_device,
    surface_distances,
)

SHAPE = (40, 40, 40)


def _surface(mask: np.ndarray) -> np.ndarray:
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=cross)


def _directed(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) from every surface voxel of ``a`` to the surface of ``b`` (MedPy style)."""
    to_b = ndimage.distance_transform_edt(~_surface(b), sampling=spacing)
    return to_b[_surface(a)]


def reference_pooled(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> float:
    d = np.concatenate([_directed(a, b, spacing), _directed(b, a, spacing)])
    return float(np.percentile(d, 95))


def reference_max_directed(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> float:
    return float(max(np.percentile(_directed(a, b, spacing), 95),
                     np.percentile(_directed(b, a, spacing), 95)))


def blob(seed: int, shape: tuple[int, ...] = SHAPE, level: float = 0.6,
         sigma: float = 3.0) -> np.ndarray:
    """A smooth random blob (or a few), like a tumour region."""
    noise = np.random.default_rng(seed).normal(size=shape)
    smooth = ndimage.gaussian_filter(noise, sigma)
    return smooth > level * smooth.std() * 2


def ellipsoid(center: tuple[float, ...], radii: tuple[float, ...],
              shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii, strict=True)) <= 1


def one_voxel(at: tuple[int, ...], shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[at] = True
    return mask


CASES = {
    "blobs": (blob(1), blob(2), (1.0, 1.0, 1.0)),
    "blobs_anisotropic": (blob(3), blob(4), (0.9375, 0.9375, 3.0)),
    "ellipsoids": (ellipsoid((20, 20, 20), (9, 7, 5)), ellipsoid((22, 19, 20), (8, 8, 6)),
                   (1.0, 1.0, 1.0)),
    "ellipsoids_anisotropic": (ellipsoid((20, 20, 20), (9, 7, 5)),
                               ellipsoid((18, 21, 22), (10, 6, 6)), (1.2, 0.7, 2.5)),
    "one_voxel_each": (one_voxel((5, 6, 7)), one_voxel((8, 10, 7)), (1.0, 2.0, 3.0)),
    "one_voxel_in_blob": (one_voxel((20, 20, 20)), ellipsoid((20, 20, 20), (6, 6, 6)),
                          (1.0, 1.0, 1.0)),
    "touching_border": (ellipsoid((0, 20, 39), (8, 10, 6)), ellipsoid((2, 18, 37), (9, 9, 9)),
                        (1.0, 1.0, 1.5)),
    "identical": (blob(5), blob(5), (1.0, 1.0, 1.0)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pooled_matches_brats_reference(name):
    pred, ref, spacing = CASES[name]
    assert pred.any() and ref.any()
    assert hd95_pooled(pred, ref, spacing) == pytest.approx(
        reference_pooled(pred, ref, spacing), rel=1e-5, abs=1e-5)


# MONAI's own compute_hausdorff_distance passes an argument it has deprecated itself.
@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
@pytest.mark.parametrize("name", sorted(CASES))
def test_max_directed_matches_reference_and_monai(name):
    import torch
    from monai.metrics import compute_hausdorff_distance

    pred, ref, spacing = CASES[name]
    ours = hd95_max_directed(pred, ref, spacing)
    assert ours == pytest.approx(reference_max_directed(pred, ref, spacing), rel=1e-5, abs=1e-5)
    monai = compute_hausdorff_distance(
        torch.as_tensor(pred)[None, None].float(), torch.as_tensor(ref)[None, None].float(),
        include_background=True, percentile=95, spacing=spacing,
    )
    assert ours == pytest.approx(float(monai), rel=1e-5, abs=1e-5)


def test_two_dimensional_masks():
    pred = ellipsoid((10, 12), (6, 4), shape=(30, 30))
    ref = ellipsoid((12, 12), (5, 5), shape=(30, 30))
    spacing = (0.5, 1.5)
    assert hd95_pooled(pred, ref, spacing) == pytest.approx(reference_pooled(pred, ref, spacing),
                                                            rel=1e-5)


def test_single_voxels_give_their_distance_in_mm():
    # (5,6,7) to (8,10,7) with spacing (1,2,3): sqrt(3² + 8²) mm, in both definitions.
    pred, ref, spacing = CASES["one_voxel_each"]
    expected = float(np.hypot(3.0, 8.0))
    assert hd95_pooled(pred, ref, spacing) == pytest.approx(expected, rel=1e-6)
    assert hd95_max_directed(pred, ref, spacing) == pytest.approx(expected, rel=1e-6)


def worked_example() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """docs/metrics.md's example: a 30-voxel line, and the same line plus 3 outliers 10 mm off.

    Distances P->R: 30 zeros and three 10 mm; R->P: 30 zeros. The directed 95th percentile
    P->R (33 values, index 0.95 * 32 = 30.4) is 10 mm; the pooled one (63 values, index
    58.9 <= 59 zeros) is 0 mm.
    """
    ref = np.zeros(SHAPE, dtype=bool)
    ref[5:35, 10, 10] = True
    pred = ref.copy()
    pred[[10, 20, 30], 10, 15] = True  # 5 voxels away along z at 2 mm: 10 mm
    return pred, ref, (1.0, 1.0, 2.0)


def test_worked_example_where_the_definitions_differ():
    pred, ref, spacing = worked_example()
    assert hd95_pooled(pred, ref, spacing) == pytest.approx(0.0, abs=1e-6)
    assert hd95_max_directed(pred, ref, spacing) == pytest.approx(10.0, rel=1e-6)
    assert reference_pooled(pred, ref, spacing) == pytest.approx(0.0, abs=1e-6)
    assert reference_max_directed(pred, ref, spacing) == pytest.approx(10.0, rel=1e-6)


def test_definitions_differ_on_blobs_too():
    pred, ref, spacing = CASES["blobs"]
    pooled, monai = hd95_pooled(pred, ref, spacing), hd95_max_directed(pred, ref, spacing)
    # A pooled quantile lies between the two directed ones: max-of-directed is never lower.
    assert monai > pooled
    assert pooled == pytest.approx(12.083, abs=1e-3) and monai == pytest.approx(12.166, abs=1e-3)


def test_spacing_is_used():
    pred, ref, _ = CASES["ellipsoids"]
    iso = hd95_pooled(pred, ref, (1.0, 1.0, 1.0))
    assert hd95_pooled(pred, ref, (2.0, 2.0, 2.0)) == pytest.approx(2 * iso, rel=1e-6)
    assert hd95_pooled(pred, ref, (1.0, 1.0, 3.0)) != pytest.approx(iso, rel=1e-3)


@pytest.mark.parametrize("fn", [hd95_pooled, hd95_max_directed])
def test_empty_masks_follow_brats(fn):
    empty, full = np.zeros(SHAPE, dtype=bool), blob(1)
    spacing = (1.0, 1.0, 1.0)
    assert fn(empty, empty, spacing) == 0.0
    assert fn(empty, full, spacing) == EMPTY_HD95_MM
    assert fn(full, empty, spacing) == EMPTY_HD95_MM
    assert abs(EMPTY_HD95_MM - float(np.sqrt(240**2 + 240**2 + 155**2))) < 0.005


def test_bad_input_is_refused():
    a = blob(1)
    with pytest.raises(ValueError, match="spacing"):
        hd95_pooled(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        hd95_pooled(a, a[:-1], (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        hd95_pooled(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="non-empty"):
        surface_distances(a, np.zeros_like(a), (1.0, 1.0, 1.0))


def test_distances_are_shared_and_read_only():
    pred, ref, spacing = CASES["blobs"]
    first = surface_distances(pred, ref, spacing)
    again = surface_distances(pred.copy(), ref.copy(), spacing)
    assert first is again  # the cache: hd95 and hd95_monai of a region compute them once
    assert not first[0].flags.writeable
    other = surface_distances(pred, ref, (1.0, 1.0, 2.0))
    assert other is not first


def test_device_resolution(monkeypatch):
    import torch

    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_device() == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "CPU")
    assert resolve_device() == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown metrics device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(CASES))
def test_gpu_path_gives_the_cpu_values(name):
    pred, ref, spacing = CASES[name]
    for fn in (hd95_pooled, hd95_max_directed):
        assert fn(pred, ref, spacing, device="cuda") == pytest.approx(
            fn(pred, ref, spacing, device="cpu"), rel=1e-5, abs=1e-5)

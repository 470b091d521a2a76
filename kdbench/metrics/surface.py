"""Surface distances and the two HD95 definitions, on MONAI's edge and distance functions.

Surfaces are the BraTS ones: a mask minus its erosion by the face-connected cross (6-neighbour
in 3-D), voxels on the image border counting as surface (``monai.metrics.utils.get_mask_edges``
with ``spacing=None`` is exactly scipy's ``binary_erosion ^ mask``). Distances go from each
surface voxel of one mask to the nearest surface voxel of the other, in mm, using the voxel
spacing (``monai.metrics.utils.get_surface_distance``). Both masks are first cut to the
bounding box of their union with a one-voxel background margin (:func:`crop_to_union`; values
unchanged, a BraTS case scores about 6x faster than with MONAI's own crop).

Two 95th percentiles (linear interpolation, numpy's default and ``torch.quantile``'s) are used
by different tools:

- :func:`hd95_pooled` (kdbench ``hd95``): the percentile of the *pooled* distances of both
  directions, as the official BraTS tooling (``brats-evaluation``/``panoptica``, MedPy) does;
- :func:`hd95_max_directed` (kdbench ``hd95_monai``): the *larger* of the two directed
  percentiles, as MONAI's ``HausdorffDistanceMetric(percentile=95)`` does.

Empty masks follow the BraTS convention: both empty 0 mm, exactly one empty
:data:`EMPTY_HD95_MM` (373.13 mm, the diagonal of the 240×240×155 1-mm BraTS volume).

Device: ``cpu`` (default) or ``cuda``. On CUDA the masks go to the GPU as torch tensors; MONAI
then erodes with cuCIM and computes a dense distance transform with cuCIM/cupy when both are
installed, and otherwise falls back to scipy on the host; either way the values are those of the
CPU path (which uses a KD-tree over the surface voxels) up to float32 rounding. The device comes
from the ``device`` argument, else the ``KDBENCH_METRICS_DEVICE`` environment variable
(``cpu``, ``cuda``, ``cuda:1``, ``auto`` = CUDA when available), else ``cpu``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence

import numpy as np

#: HD95 (mm) when exactly one of prediction and reference is empty (BraTS 2021 ranking).
EMPTY_HD95_MM = 373.13
#: Environment variable naming the device of the distance computations.
DEVICE_ENV = "KDBENCH_METRICS_DEVICE"

_cache_lock = threading.Lock()
_cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}


def resolve_device(device: str | None = None) -> str:
    """The device to compute distances on.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or ``None`` (then the
            ``KDBENCH_METRICS_DEVICE`` variable, else ``"cpu"``).

    Returns:
        ``"cpu"`` or a CUDA device string.

    Raises:
        ValueError: an unknown device, or CUDA asked for where torch sees none.
    """
    chosen = (device or os.environ.get(DEVICE_ENV) or "cpu").strip().lower()
    if chosen == "cpu":
        return chosen
    if chosen != "auto" and not (chosen == "cuda" or chosen.startswith("cuda:")):
        raise ValueError(f"unknown metrics device {chosen!r}; use cpu, cuda, cuda:N or auto")
    import torch

    if not torch.cuda.is_available():
        if chosen == "auto":
            return "cpu"
        raise ValueError(f"metrics device {chosen!r} asked for, but torch sees no CUDA device")
    return "cuda" if chosen == "auto" else chosen


def _check(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> tuple[float, ...]:
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} values for a "
                         f"{pred.ndim}-D mask")
    spacing = tuple(float(s) for s in spacing)
    if not all(s > 0 and np.isfinite(s) for s in spacing):
        raise ValueError(f"spacing must be positive and finite, got {spacing}")
    return spacing


def _key(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], device: str) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((pred.shape, spacing, device)).encode())
    digest.update(np.packbits(pred).tobytes())
    digest.update(np.packbits(ref).tobytes())
    return digest.digest()


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], device: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: prediction → reference and reference → prediction.

    Both HD95 definitions need the same distances; the last pair computed is kept, so scoring
    ``hd95`` and ``hd95_monai`` on one region computes the distances once.

    Args:
        pred: predicted boolean mask, not empty.
        ref: reference boolean mask, not empty, same shape.
        spacing: voxel size in mm along each axis.
        device: see :func:`resolve_device`.

    Returns:
        ``(d_pred_to_ref, d_ref_to_pred)``: float64 arrays, one distance per surface voxel of
        the first mask of each pair.

    Raises:
        ValueError: an empty mask, shapes or spacing that do not match.
    """
    spacing = _check(pred, ref, spacing)
    if not (pred.any() and ref.any()):
        raise ValueError("surface distances need two non-empty masks; handle empty ones first")
    pred, ref = pred.astype(bool, copy=False), ref.astype(bool, copy=False)
    device = resolve_device(device)
    pred, ref = crop_to_union(pred, ref)
    key = _key(pred, ref, spacing, device)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    from monai.metrics.utils import get_mask_edges, get_surface_distance

    if device == "cpu":
        p, r = pred, ref
    else:
        import torch

        p = torch.as_tensor(pred, device=device)
        r = torch.as_tensor(ref, device=device)
    # spacing=None: binary surfaces by erosion with the face-connected cross (BraTS); with a
    # spacing MONAI would return sub-voxel surface elements instead. Already cropped here.
    edges_pred, edges_ref = get_mask_edges(p, r, crop=False, spacing=None)
    result = tuple(
        _to_numpy(get_surface_distance(a, b, distance_metric="euclidean", spacing=spacing))
        for a, b in ((edges_pred, edges_ref), (edges_ref, edges_pred))
    )
    with _cache_lock:
        _cache.clear()
        _cache[key] = result
    return result


def crop_to_union(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union, with one background voxel all round.

    Surfaces and distances are unchanged: the erosion sees background beyond the box as scipy
    sees it beyond the image border (``border_value=0``), every surface voxel lies in the box,
    and a distance between two of them does not depend on where the box starts. MONAI's own
    crop (``get_mask_edges(crop=True)``) computes the same box through torch transforms, about
    ten times slower on a BraTS volume than these reductions.
    """
    union = pred | ref
    box = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=others))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return np.pad(pred[tuple(box)], 1), np.pad(ref[tuple(box)], 1)


def _to_numpy(values: object) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.array(values, dtype=np.float64).ravel()
    array.flags.writeable = False  # shared through the cache
    return array


def _empty_value(pred: np.ndarray, ref: np.ndarray) -> float | None:
    """The BraTS value when a mask is empty, else ``None``."""
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if has_pred and has_ref:
        return None
    return 0.0 if has_pred == has_ref else EMPTY_HD95_MM


def _hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], device: str | None,
          reduce: Callable[[np.ndarray, np.ndarray], float]) -> float:
    # the checks and the BraTS empty-mask conventions are common to both definitions
    _check(pred, ref, spacing)
    empty = _empty_value(pred, ref)
    if empty is not None:
        return empty
    forward, backward = surface_distances(pred, ref, spacing, device)
    return float(reduce(forward, backward))


def hd95_pooled(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], device: str | None = None
) -> float:
    """HD95 as BraTS computes it: 95th percentile of the pooled two-way surface distances.

    Args:
        pred: predicted boolean mask.
        ref: reference boolean mask.
        spacing: voxel size in mm along each axis.
        device: see :func:`resolve_device`.

    Returns:
        Distance in mm; 0 if both masks are empty, :data:`EMPTY_HD95_MM` if one is.
    """
    return _hd95(pred, ref, spacing, device,
                 lambda f, b: np.percentile(np.concatenate([f, b]), 95))


def hd95_max_directed(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], device: str | None = None
) -> float:
    """HD95 as MONAI computes it: the larger of the two directed 95th percentiles.

    Args:
        pred: predicted boolean mask.
        ref: reference boolean mask.
        spacing: voxel size in mm along each axis.
        device: see :func:`resolve_device`.

    Returns:
        Distance in mm; 0 if both masks are empty, :data:`EMPTY_HD95_MM` if one is.
    """
    return _hd95(pred, ref, spacing, device,
                 lambda f, b: max(np.percentile(f, 95), np.percentile(b, 95)))

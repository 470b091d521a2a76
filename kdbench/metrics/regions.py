"""From a label map in any BraTS convention to the boolean masks of the evaluation regions.

Labels are first mapped to the canonical values of :mod:`kdbench.cases` (0 background,
1 edema, 2 necrotic core, 3 enhancing) with :data:`~kdbench.cases.LABEL_MAPS`, then each
region of :data:`~kdbench.cases.REGIONS` (WT = {1, 2, 3}, TC = {2, 3}, ET = {3}) becomes a
boolean mask. Every metric is computed on these masks, so all conventions score alike.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kdbench.cases import LABEL_MAPS, REGIONS
from kdbench.errors import KdbenchError


def check_convention(convention: str) -> Mapping[int, int]:
    """The label map of ``convention``.

    Args:
        convention: a key of :data:`~kdbench.cases.LABEL_MAPS`.

    Returns:
        Source label value -> canonical label value.

    Raises:
        KdbenchError: unknown convention (the known ones are named).
    """
    try:
        return LABEL_MAPS[convention]
    except KeyError:
        known = ", ".join(LABEL_MAPS)
        raise KdbenchError(f"unknown label convention {convention!r}; use one of {known}") from None


def to_canonical(labels: np.ndarray, convention: str) -> np.ndarray:
    """Map a label map in ``convention`` to canonical labels.

    Args:
        labels: integer-valued label map (any shape; floats holding integers are accepted, as
            some tools write labels as float NIfTI).
        convention: a key of :data:`~kdbench.cases.LABEL_MAPS`.

    Returns:
        A ``uint8`` array of the same shape with values in {0, 1, 2, 3}.

    Raises:
        KdbenchError: a value that the convention does not define (e.g. 4 in ``brats2023``):
            scoring it as background would hide a convention mix-up.
    """
    mapping = check_convention(convention)
    fast = _lookup(labels, mapping)  # one table lookup; np.unique only to name a bad value
    if fast is not None:
        return fast
    values = np.unique(labels)
    unknown = [v for v in values.tolist() if v not in mapping]
    if unknown:
        shown = ", ".join(str(int(v)) if float(v).is_integer() else str(v) for v in unknown[:5])
        other = [c for c, m in LABEL_MAPS.items()
                 if c != convention and all(v in m for v in values.tolist())]
        hint = f"; the values fit {' or '.join(other)}" if other else ""
        raise KdbenchError(
            f"label values {shown} are not in the {convention} convention "
            f"(expected {sorted(mapping)}){hint}; give the right convention with --labels"
        )
    lookup = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for source, canonical in mapping.items():
        lookup[source] = canonical
    return lookup[labels.astype(np.intp, copy=False)]


def _lookup(labels: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray | None:
    """Canonical labels of an integer label map through one lookup table, or ``None`` when a
    value is outside ``mapping`` (or the map is not of non-negative integers): the caller then
    finds and names the bad values."""
    if labels.size == 0 or labels.dtype.kind not in "ui":
        return None
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high > max(mapping):
        return None
    unknown = np.uint8(255)
    lookup = np.full(high + 1, unknown, dtype=np.uint8)
    for source, canonical in mapping.items():
        if source <= high:
            lookup[source] = canonical
    out = lookup[labels]
    return None if (out == unknown).any() else out


def region_masks(canonical: np.ndarray) -> dict[str, np.ndarray]:
    """The boolean mask of every BraTS region.

    Args:
        canonical: canonical label map (see :func:`to_canonical`).

    Returns:
        ``{"WT": mask, "TC": mask, "ET": mask}`` in the order of
        :data:`~kdbench.cases.REGIONS`.
    """
    return {region: np.isin(canonical, labels) for region, labels in REGIONS.items()}

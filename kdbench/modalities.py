"""The canonical MRI modalities and the combinations of them a scenario can name.

Every dataset is mapped to one channel order, ``t1, t1ce, t2, flair`` (BraTS 2023 names
``t1n, t1c, t2w, t2f`` are aliases), so that a modality subset is the same channels for every
strategy.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

#: Other spellings found in BraTS releases, mapped to the canonical name.
ALIASES: dict[str, str] = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"}


def canonical(name: str) -> str:
    """Return the canonical name of a modality, or raise ``ValueError`` naming the choices."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in MODALITIES:
        choices = ", ".join(MODALITIES)
        raise ValueError(f"unknown modality {name!r}; use one of {choices}")
    return key


def normalize(names: Iterable[str]) -> tuple[str, ...]:
    """Canonicalise a set of modality names and return them in channel order.

    Raises:
        ValueError: on an unknown name, a duplicate, or an empty set.
    """
    seen = [canonical(n) for n in names]
    if not seen:
        raise ValueError("a modality set must name at least one modality")
    duplicates = sorted({m for m in seen if seen.count(m) > 1})
    if duplicates:
        raise ValueError(f"modality listed twice: {', '.join(duplicates)}")
    return tuple(m for m in MODALITIES if m in seen)


def channel_indices(subset: Iterable[str]) -> tuple[int, ...]:
    """Channel indices of ``subset`` in the canonical four-channel order."""
    return tuple(MODALITIES.index(m) for m in normalize(subset))


def all_combinations(pool: Iterable[str] = MODALITIES) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``pool``: 15 for the four modalities.

    Ordered by size, then by channel order, as the missing-modality literature tabulates them.
    """
    ordered = normalize(pool)
    return [c for k in range(1, len(ordered) + 1) for c in combinations(ordered, k)]


def label(subset: Iterable[str]) -> str:
    """A short, file-name-safe label for a subset, e.g. ``t1ce+flair``."""
    return "+".join(normalize(subset))


def metric_suffix(subset: Iterable[str]) -> str:
    """The subset as MLflow metric names allow it (no ``+``), e.g. ``t1ce-flair``."""
    return "-".join(normalize(subset))

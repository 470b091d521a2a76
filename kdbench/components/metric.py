"""Metrics: registered through ``kdbench_register_metrics``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from kdbench.components.base import Component

if TYPE_CHECKING:
    import numpy as np


class Metric(Component):
    """A per-case score of one region of a prediction against its reference (Dice, HD95, ...).

    A metric declares its ``unit``, its direction (``higher_is_better``: ``True``, ``False``,
    or ``None`` for a descriptive value such as a volume) and its exact ``definition`` (shown
    beside every table that uses it, with the empty-mask rule), and implements
    :meth:`compute`. A class without ``compute`` or ``definition`` is refused at registration.
    """

    unit: ClassVar[str] = ""
    higher_is_better: ClassVar[bool | None] = None
    definition: ClassVar[str] = ""

    def compute(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
        """The metric of boolean mask ``pred`` against ``ref`` (voxel size ``spacing`` in mm)."""
        raise NotImplementedError

    @classmethod
    def validate_declaration(cls) -> list[str]:
        problems = super().validate_declaration()
        if cls.compute is Metric.compute:
            problems.append("a metric must implement compute(pred, ref, spacing) -> float")
        if not isinstance(cls.definition, str) or not cls.definition.strip():
            problems.append("a metric must state its exact `definition` (with its rule for "
                            "empty masks): it is printed beside every table that uses it")
        if cls.higher_is_better not in (True, False, None):
            problems.append(f"`higher_is_better` must be True, False or None, got "
                            f"{cls.higher_is_better!r}")
        if not isinstance(cls.unit, str):
            problems.append(f"`unit` must be a string ('' for a ratio), got {cls.unit!r}")
        return problems

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The base summary plus unit, direction and definition (for ``kdbench plugins``)."""
        return {**super().describe(), "unit": cls.unit, "higher_is_better": cls.higher_is_better,
                "definition": cls.definition}

"""The ``multi`` strategy and teacher: nnU-Net trained on every training modality.

As a strategy it is the upper bound (it predicts from all modalities, whatever the scenario
leaves available). As a teacher it is the default in-domain teacher of the distillation
strategies. Both roles are the same class, so a protocol that runs ``multi`` and ``kd`` trains
one multi-modal network per (N, seed), not two.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdbench import ModalityUse, Strategy, Teacher, hookimpl


class Multi(Strategy, Teacher):
    """nnU-Net trained and evaluated on all training modalities (upper bound, default teacher)."""

    name = "multi"
    version = "1"

    @classmethod
    def modality_uses(
        cls, training: tuple[str, ...], available: Sequence[tuple[str, ...]]
    ) -> list[ModalityUse]:
        """One model for the scenario, on every training modality, whatever is available."""
        return [cls.teacher_use(training)]


@hookimpl
def kdbench_register_strategies(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``multi`` as a strategy."""
    registry.add(Multi)


@hookimpl
def kdbench_register_teachers(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``multi`` as a teacher."""
    registry.add(Multi)

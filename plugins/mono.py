"""The ``mono`` strategy and teacher: nnU-Net trained on the inference-time modalities only.

As a strategy it is the lower bound every other strategy must beat: the model never sees a
modality that will be missing at inference time. As a teacher (``teacher: mono``) it is the
born-again control of distillation (Furlanello et al., ICML 2018): a teacher that reads exactly
what the student reads, so that what ``kd`` gains over ``kd`` with a ``mono`` teacher is what
the missing modalities teach, not the regularisation of soft targets. Both roles are one class:
the teacher of a ``kd`` student at (N, seed) is the ``mono`` strategy's own Job there.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdbench import ModalityUse, Strategy, Teacher, hookimpl


class Mono(Strategy, Teacher):
    """nnU-Net trained and evaluated on the available modalities only (the lower bound, and
    the born-again teacher)."""

    name = "mono"
    version = "1"

    @classmethod
    def modality_uses(
        cls, training: tuple[str, ...], available: Sequence[tuple[str, ...]]
    ) -> list[ModalityUse]:
        """One model per available subset, trained on that subset alone."""
        return [ModalityUse(training=subset, evaluate=(subset,)) for subset in available]

    @classmethod
    def teacher_use(cls, training: tuple[str, ...], available: tuple[str, ...] | None = None
                    ) -> ModalityUse:
        """As a teacher it reads the student's own subset: the ``mono`` Job of that subset."""
        if available is None:
            raise ValueError("mono as a teacher needs the student's available subset (a "
                             "student scored on one subset per Job)")
        return ModalityUse(training=available, evaluate=(available,))


@hookimpl
def kdbench_register_strategies(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``mono`` as a strategy."""
    registry.add(Mono)


@hookimpl
def kdbench_register_teachers(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``mono`` as a teacher (the born-again control)."""
    registry.add(Mono)

"""The ``mono`` strategy: nnU-Net trained on the inference-time modalities only.

It is the lower bound every other strategy must beat: the model never sees a modality that
will be missing at inference time.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdbench import ModalityUse, Strategy, hookimpl


class Mono(Strategy):
    """nnU-Net trained and evaluated on the available modalities only (the lower bound)."""

    name = "mono"
    version = "1"

    @classmethod
    def modality_uses(
        cls, training: tuple[str, ...], available: Sequence[tuple[str, ...]]
    ) -> list[ModalityUse]:
        """One model per available subset, trained on that subset alone."""
        return [ModalityUse(training=subset, evaluate=(subset,)) for subset in available]


@hookimpl
def kdbench_register_strategies(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``mono``."""
    registry.add(Mono)

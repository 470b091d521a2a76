"""Generators: models that synthesise missing modalities from the available ones."""

from __future__ import annotations

from kdbench.components.base import Component
from kdbench.components.strategy import Modalities, ModalityPlan


class Generator(Component):
    """A generative model trained as a Job per (N, seed), shared by every strategy using it."""

    @classmethod
    def generator_plan(cls, training: Modalities) -> ModalityPlan:
        """A generator learns from every training modality and is not segmentation-scored."""
        return ModalityPlan(training=training, evaluate=())

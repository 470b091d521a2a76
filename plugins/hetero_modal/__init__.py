"""Modality-invariant latent spaces: ``hemis`` and ``uhved``, on nnU-Net's building blocks.

One network accepts any subset of the modalities: each modality has its own nnU-Net encoder,
the skips are fused over the modalities present (HeMIS: mean and variance; U-HVED: a product of
Gaussians with a prior expert) and one nnU-Net decoder segments. Trained once per (N, seed)
with modality dropout, each model is scored on every subset the scenario makes available (all
15 under ``available: all``). Details and sources: docs/hetero_modal.md.
"""

from __future__ import annotations

from kdbench import hookimpl
from kdbench_plugins.hetero_modal.strategies import UHVED, HeMIS


@hookimpl
def kdbench_register_strategies(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``hemis`` and ``uhved``."""
    registry.add(HeMIS)
    registry.add(UHVED)


@hookimpl
def kdbench_register_teachers(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``hemis`` and ``uhved`` as teachers (seen through the student's subset)."""
    registry.add(HeMIS)
    registry.add(UHVED)

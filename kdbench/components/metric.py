"""Metrics: registered through ``kdbench_register_metrics``."""

from __future__ import annotations

from kdbench.components.base import Component


class Metric(Component):
    """A per-case score of a prediction against its reference (Dice, HD95, ...)."""

"""Reporters: registered through ``kdbench_register_reporters``."""

from __future__ import annotations

from kdbench.components.base import Component


class Reporter(Component):
    """A section of the benchmark report (tables, figures, statistics)."""

"""Executors: registered through ``kdbench_register_executors``."""

from __future__ import annotations

from kdbench.components.base import Component


class Executor(Component):
    """Runs the Jobs of a plan (in-process, local processes, SLURM)."""

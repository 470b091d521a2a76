"""Executors: run the Jobs of a plan, wave by wave (in-process, local processes, SLURM)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from kdbench.components.base import Component

if TYPE_CHECKING:
    from kdbench.plan import Job


class JobLauncher(Protocol):
    """What the runner gives an executor to start one Job."""

    def run_inline(self, job: Job) -> None:
        """Run the Job in this process (raises on failure)."""

    def command(self, job: Job) -> list[str]:
        """The command line that runs the Job in another process (``kdbench job run ...``)."""

    def started(self, job: Job) -> None:
        """Report that the Job started (progress display)."""

    def finished(self, job: Job, ok: bool) -> None:
        """Report that the Job ended."""


class Executor(Component):
    """Runs the Jobs of a plan.

    ``execute`` receives the waves still to run (each wave depends only on earlier ones) and
    must run every Job of a wave before the next wave starts. Each Job is idempotent: running a
    finished one does nothing, an interrupted one resumes from its checkpoint.
    """

    def execute(self, waves: Sequence[Sequence[Job]], launcher: JobLauncher,
                max_parallel: int = 1) -> None:
        """Run ``waves`` in order through ``launcher``."""
        raise NotImplementedError(f"executor {self.name!r} does not implement execute")

"""Executors: run the Jobs of a plan, wave by wave (in-process, local processes, SLURM)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from kdbench.components.base import Component

if TYPE_CHECKING:
    from kdbench.types import Job, Plan


class ExecutorOptions(BaseModel):
    """Options of an executor (a protocol's ``executors.<name>`` or a cluster profile file);
    subclasses add fields. They never enter a Job id: where a Job runs does not change it."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class JobState(BaseModel):
    """What an executor knows of one Job it submitted (``kdbench status``)."""

    job_id: str
    external_id: str  # e.g. the SLURM array task ``1234_5``
    state: str  # the scheduler's word: PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, ...
    active: bool  # still queued or running
    log: str | None = None


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

    def note(self, text: str) -> None:
        """Print a line for the user (submission ids, where the logs are)."""

    @property
    def state_dir(self) -> Path:
        """A folder of this protocol's runs where the executor keeps its records
        (``runs/<protocol>/executors/<name>``)."""


class Executor(Component):
    """Runs the Jobs of a plan.

    ``execute`` receives the waves still to run (each wave depends only on earlier ones) and
    must run every Job of a wave before the next wave starts (or, for a scheduler, submit it so
    that it starts only after them). Each Job is idempotent: running a finished one does nothing,
    an interrupted one resumes from its checkpoint, and a second process running the same Job
    waits for the first (``kdbench.engine.lock``).

    Options: a subclass sets ``Options`` (an :class:`ExecutorOptions` model); the runner
    validates the protocol's ``executors.<name>`` section merged with a ``--profile`` file and
    passes the result to the constructor (``self.options``).
    """

    Options: ClassVar[type[ExecutorOptions]] = ExecutorOptions

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> ExecutorOptions:
        """Check ``options`` against the executor's model (raises ``pydantic.ValidationError``)."""
        return cls.Options.model_validate(options)

    @classmethod
    def status(cls, state_dir: Path, plan: Plan) -> list[JobState]:
        """What this executor submitted for ``plan`` and where each stands, read from the
        records it keeps under ``state_dir`` (none: an executor that runs Jobs itself)."""
        return []

    def execute(self, waves: Sequence[Sequence[Job]], launcher: JobLauncher,
                max_parallel: int = 1) -> bool | None:
        """Run ``waves`` in order through ``launcher``; return ``True`` when the Jobs were
        only submitted (a scheduler's executor that does not wait for them)."""
        raise NotImplementedError(f"executor {self.name!r} does not implement execute")

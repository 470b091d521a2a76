"""The ``inline`` executor: every Job in this process, one after another (tests, debugging)."""

from __future__ import annotations

from collections.abc import Sequence

from kdbench import Executor, JobLauncher, hookimpl


class InlineExecutor(Executor):
    """Runs each Job in the calling process, in plan order; stops at the first failure."""

    name = "inline"
    version = "1"

    def execute(self, waves: Sequence[Sequence], launcher: JobLauncher,
                max_parallel: int = 1) -> None:
        for wave in waves:
            for job in wave:
                launcher.started(job)
                try:
                    launcher.run_inline(job)
                except BaseException:
                    launcher.finished(job, False)
                    raise
                launcher.finished(job, True)


@hookimpl
def kdbench_register_executors(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``inline``."""
    registry.add(InlineExecutor)

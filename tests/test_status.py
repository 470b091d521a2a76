"""How ``kdbench status`` combines the MLflow record, the scheduler and the Job lock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kdbench.components.executor import JobState
from kdbench.status import _state


def _run(status):
    return SimpleNamespace(info=SimpleNamespace(status=status))


def _task(state, active):
    return JobState(job_id="j", external_id="7_1", state=state, active=active)


@pytest.mark.parametrize(("run", "done", "scheduled", "held", "expected"), [
    (_run("FINISHED"), True, _task("FAILED", False), False, "done"),
    (None, False, _task("PENDING", True), False, "pending"),
    (None, False, _task("REQUEUED", True), False, "pending"),
    (_run("RUNNING"), False, _task("RUNNING", True), True, "running"),
    (_run("RUNNING"), False, _task("CANCELLED", False), False, "failed"),
    (_run("RUNNING"), False, _task("TIMEOUT", False), False, "failed"),
    (None, False, _task("COMPLETED", False), False, "failed"),  # ended without a record
    (_run("RUNNING"), False, _task("UNKNOWN", False), True, "running"),  # no sacct answer
    (_run("RUNNING"), False, None, True, "running"),
    (_run("RUNNING"), False, None, False, "failed"),  # left RUNNING by a killed process
    (_run("FAILED"), False, None, False, "failed"),
    (None, False, None, False, "todo"),
])
def test_state(run, done, scheduled, held, expected):
    assert _state(run, done, scheduled, held) == expected

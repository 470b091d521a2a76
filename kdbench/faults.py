"""Named crash points for fault-injection tests: ``KDBENCH_FAULT=<point>[:key=value,...]``.

The engine calls :func:`fault_point` where a crash matters (an epoch logged, a checkpoint's
temporary file written, predictions written, the per-case table written, a record half
logged; docs/reliability.md lists them). When ``KDBENCH_FAULT`` names that point, and each
``key=value`` after the colon matches the point's facts (its own keyword arguments and those of
the enclosing :func:`fault_scope`: ``job``, ``component``), the process sends itself
``SIGKILL``: a real crash, with nothing flushed or cleaned up. ``KDBENCH_FAULT_SIGNAL=STOP``
stops it instead (a test then kills it from outside while others wait for it). Unset, a point
costs one environment lookup.

Example: ``KDBENCH_FAULT=epoch:component=kd,epoch=1`` kills the run after ``kd``'s epoch 1 is
logged, before its checkpoint is written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator

ENV = "KDBENCH_FAULT"
ENV_SIGNAL = "KDBENCH_FAULT_SIGNAL"
_scope: dict[str, str] = {}


def fault_point(name: str, **facts: object) -> None:
    """Crash here if ``KDBENCH_FAULT`` names point ``name`` with matching facts."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, conditions = spec.partition(":")
    if point.strip() != name:
        return
    known = {**_scope, **{key: str(value) for key, value in facts.items()}}
    for condition in filter(None, (c.strip() for c in conditions.split(","))):
        key, _, value = condition.partition("=")
        if known.get(key.strip()) != value.strip():
            return
    how = os.environ.get(ENV_SIGNAL, "KILL").upper().removeprefix("SIG")
    print(f"kdbench: fault injected at {name} {known}: SIG{how}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), getattr(signal, f"SIG{how}"))


@contextlib.contextmanager
def fault_scope(**facts: object) -> Iterator[None]:
    """Facts that every point inside the block also matches on (e.g. the Job being run)."""
    saved = dict(_scope)
    _scope.update({key: str(value) for key, value in facts.items()})
    try:
        yield
    finally:
        _scope.clear()
        _scope.update(saved)

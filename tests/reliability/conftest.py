"""The reliability tests' grid: the demo's strategies (mono, multi as upper bound and teacher,
kd) on the session's prepared phantom with a tiny network and budget, and its uninterrupted
reference run, made once per session and compared with every interrupted or concurrent one."""

from __future__ import annotations

import pytest
from helpers import phantom_protocol, prepared_source
from reliability.grid import TINY_BACKBONE, Grid

from kdbench.plan import build_plan
from kdbench.protocol import load_protocol


@pytest.fixture(scope="session")
def grid(tmp_path_factory, registry, prepared_phantom) -> Grid:
    """The reduced demo on the session phantom (its prepared folder reused as the protocol's
    data), run once uninterrupted in this process: the reference."""
    from kdbench.runner import run_protocol

    root = tmp_path_factory.mktemp("reliability")
    protocol = phantom_protocol(
        root, "reliability",
        dataset=prepared_source(prepared_phantom),
        backbone=TINY_BACKBONE)
    plan = build_plan(load_protocol(protocol, registry), registry)
    assert [j.component for j in plan.jobs] == ["mono", "multi", "kd"]
    made = Grid(protocol, prepared_phantom.path.parent, plan, None)  # type: ignore[arg-type]
    made.reference = made.settings(root / "reference")
    report = run_protocol(made.reference, registry)
    assert len(report.todo) == 3
    return made

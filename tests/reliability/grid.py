"""The reliability tests' grid (the fixture ``grid`` in conftest.py) and what they read of its
runs: the record by Job, per-case tables, ``kdbench`` subprocesses."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

from kdbench.engine.execute import ExecutionSettings
from kdbench.tracking import COMPLETE, JOB_ID, STATUS, Tracker
from kdbench.types import Plan

#: The smallest nnU-Net that still trains on the 32³ phantom (3 stages planned).
TINY_BACKBONE = {"name": "nnunet", "options": {"patch_size": [16, 16, 16], "batch_size": 2,
                                                "features_per_stage": [8, 16, 32],
                                                "mirroring": False}}


@dataclass
class Grid:
    """The protocol, where its data lives, its plan and the reference run's record."""

    protocol: Path
    data_dir: Path
    plan: Plan
    reference: ExecutionSettings

    def settings(self, root: Path, data_dir: Path | None = None) -> ExecutionSettings:
        """Fresh runs folder and MLflow database under ``root``."""
        return ExecutionSettings(self.protocol, data_dir or self.data_dir, root / "runs",
                           f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def runs_by_job(plan: Plan, tracking_uri: str) -> dict[str, list[Any]]:
    """Every MLflow run of the protocol, by Job id."""
    tracker = Tracker(plan, tracking_uri)
    out: dict[str, list[Any]] = {job.id: [] for job in plan.jobs}
    for run in tracker.client.search_runs([tracker.experiment_id], max_results=1000):
        out.setdefault(run.data.tags[JOB_ID], []).append(run)
    return out


def complete_runs(plan: Plan, tracking_uri: str) -> dict[str, list[Any]]:
    """The complete runs by Job id."""
    return {job: [r for r in runs if r.data.tags.get(STATUS) == COMPLETE]
            for job, runs in runs_by_job(plan, tracking_uri).items()}


def per_case_bytes(plan: Plan, tracking_uri: str, run: Any, dest: Path) -> bytes:
    """The per-case table a complete run recorded (its MLflow artefact), as bytes."""
    tracker = Tracker(plan, tracking_uri)
    dest.mkdir(parents=True, exist_ok=True)
    return Path(tracker.client.download_artifacts(run.info.run_id, "per_case.csv",
                                                  str(dest))).read_bytes()


def kdbench(*args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen:
    """Start ``python -m kdbench ARGS`` as a user would (the caller's KDBENCH_* variables
    dropped, ``env`` added)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("KDBENCH_")}
    full.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "kdbench", *args], cwd=ROOT, env=full,
                            text=True, **popen)


def run_args(settings: ExecutionSettings, *extra: str) -> list[str]:
    """``run PROTOCOL`` with the settings' folders and tracking URI."""
    return ["run", str(settings.protocol_path), "--data-dir", str(settings.data_dir),
            "--runs-dir", str(settings.runs_dir), "--tracking-uri", str(settings.tracking_uri),
            *extra]


@contextlib.contextmanager
def tmpfs(folder: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder`` (a small disk to fill, or a read-only folder
    that root cannot write), unmounted afterwards; skipped where it cannot be mounted (not
    root: root ignores permission bits, so a mount is the only read-only folder for it)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk or a read-only folder is simulated with a tmpfs: needs root")
    folder.mkdir(parents=True, exist_ok=True)
    options = f"{'ro,' if read_only else ''}size={size}"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)

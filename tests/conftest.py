"""Shared fixtures: the loaded built-in plugins and editable copies of the demo protocol."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import demo_dict, phantom_protocol, prepared_source
from reliability.grid import TINY_BACKBONE, Grid

from kdbench.plan import build_plan
from kdbench.plugin_manager import load_plugins
from kdbench.protocol import load_protocol
from kdbench.registry import Registry


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The built-in plugins, unaffected by the caller's KDBENCH_* variables."""
    return load_plugins(use_env=False)


@pytest.fixture
def demo_data() -> dict[str, Any]:
    """The demo protocol as a dict (``helpers.demo_dict``: 24 cases, N = 4 and 12, two seeds,
    3d_fullres), to modify in a test."""
    return demo_dict()


@pytest.fixture
def write_protocol(tmp_path: Path) -> Callable[[dict[str, Any] | str], Path]:
    """Write a protocol (a dict or raw YAML text) to a temporary file."""
    counter = iter(range(10_000))

    def write(content: dict[str, Any] | str) -> Path:
        path = tmp_path / f"protocol_{next(counter)}.yaml"
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def prepared_phantom(tmp_path_factory, registry):
    """A 10-case phantom at 32³, prepared through nnU-Net once per test session (~40 s)."""
    from kdbench.data.prepare import prepare_dataset
    from kdbench.data.prepared import PreparedDataset
    from kdbench_plugins.phantom import generate_phantom

    root = tmp_path_factory.mktemp("phantom_prepared")
    source = generate_phantom(root / "source", cases=10, shape=(32, 32, 32), seed=0)
    result = prepare_dataset(registry, source, "phantom", root / "data")
    return PreparedDataset.open(result.path)


@pytest.fixture(scope="session")
def grid(tmp_path_factory, registry, prepared_phantom) -> Grid:
    """The reliability and deploy tests' grid: the reduced demo on the session phantom (its
    prepared folder reused as the protocol's data), run once uninterrupted in this process:
    the reference."""
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


# -- real services on loopback for the `cluster` tests, started by the project's own scripts --

def _service(script: str, folder: Path, *args: str) -> str:
    """Start ``scripts/cluster/<script> start FOLDER ARGS``; its last stdout line (skip when the
    script says it cannot install what it needs: exit 3)."""
    import subprocess

    from helpers import ROOT

    out = subprocess.run(["bash", str(ROOT / "scripts" / "cluster" / script), "start",
                          str(folder), *args], capture_output=True, text=True, timeout=900)
    if out.returncode == 3:
        pytest.skip(f"{script}: {out.stderr.strip()}")
    assert out.returncode == 0, f"{script} start failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout.strip().splitlines()[-1]


def _stop(script: str, folder: Path) -> None:
    import shutil
    import subprocess

    from helpers import ROOT

    subprocess.run(["bash", str(ROOT / "scripts" / "cluster" / script), "stop", str(folder)],
                   capture_output=True, text=True, timeout=300)
    shutil.rmtree(folder, ignore_errors=True)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL on 127.0.0.1 (scripts/cluster/postgres.sh), stopped at the end:
    its folder (under /tmp: the `postgres` user must be able to enter it)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="kdpg"))
    try:
        _service("postgres.sh", folder, str(free_port()))
        yield folder
    finally:
        _stop("postgres.sh", folder)


def _database_url(folder: Path, name: str) -> str:
    import subprocess

    from helpers import ROOT

    out = subprocess.run(["bash", str(ROOT / "scripts" / "cluster" / "postgres.sh"), "url",
                          str(folder), name], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="session")
def postgres_database(postgres):
    """name -> the URL of that database of the throw-away server (created if missing)."""
    return lambda name: _database_url(postgres, name)


@pytest.fixture(scope="session")
def postgres_url(postgres):
    """The URL of the throw-away server's database for Optuna (``kdbench``)."""
    return _database_url(postgres, "kdbench")


@pytest.fixture(scope="session")
def tracking_server(postgres):
    """An MLflow tracking server (scripts/cluster/mlflow_server.sh) on 127.0.0.1 with its own
    PostgreSQL database as backend store (Optuna and MLflow each keep an alembic_version
    table: they cannot share one); its URL (``http://127.0.0.1:PORT``)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="kdmlflow"))
    try:
        yield _service("mlflow_server.sh", folder, _database_url(postgres, "mlflow"),
                       str(free_port()))
    finally:
        _stop("mlflow_server.sh", folder)


@pytest.fixture(scope="session")
def slurm_env():
    """A single-node SLURM on 127.0.0.1 (scripts/cluster/slurm.sh): the environment variables
    its commands need (SLURM_CONF, PATH with the sacct stand-in)."""
    import os
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="kdslurm"))
    try:
        _service("slurm.sh", folder)
        env = {"SLURM_CONF": str(folder / "etc" / "slurm.conf"),
               "PATH": f"{folder / 'bin'}:{os.environ['PATH']}"}
        yield env
    finally:
        _stop("slurm.sh", folder)

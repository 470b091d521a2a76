"""Folders a run cannot write to are named before any Job starts: a read-only runs folder or
MLflow store (a read-only mount: root ignores permission bits), or a path that is no folder."""

from __future__ import annotations

import pytest
from helpers import phantom_protocol, run_cli
from reliability.grid import tmpfs

from kdbench.engine.execute import ExecutionSettings
from kdbench.errors import KdbenchError
from kdbench.runner import run_protocol


@pytest.fixture
def read_only(tmp_path):
    """A read-only tmpfs (root only; skipped elsewhere)."""
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as folder:
        yield folder


@pytest.fixture
def protocol(tmp_path):
    return phantom_protocol(tmp_path, "storage")


def test_read_only_runs_folder_and_mlflow_store_fail_up_front(protocol, read_only, tmp_path,
                                                              registry):
    mlflow = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    settings = ExecutionSettings(protocol, tmp_path / "data", read_only / "runs", mlflow)
    with pytest.raises(KdbenchError, match=rf"{read_only / 'runs'} is not writable \(Read-only "
                       r"file system\): kdbench keeps each Job's checkpoints and predictions "
                       "there; choose another --runs-dir"):
        run_protocol(settings, registry)
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "data").exists()

    settings = ExecutionSettings(protocol, tmp_path / "data", tmp_path / "runs",
                           f"sqlite:///{read_only / 'mlflow.db'}")
    with pytest.raises(KdbenchError, match=rf"{read_only} is not writable \(Read-only file "
                       r"system\): kdbench keeps the MLflow database mlflow.db there; choose "
                       "another --tracking-uri"):
        run_protocol(settings, registry)
    assert not (tmp_path / "data").exists()

    out = run_cli("run", str(protocol), "--runs-dir", str(read_only / "runs"),
                  "--tracking-uri", mlflow, "--data-dir", str(tmp_path / "data"))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    message = " ".join(out.stderr.split())  # as one line, however rich wrapped it
    assert f"{read_only / 'runs'} is not writable (Read-only file system)" in message


def test_a_runs_folder_that_is_a_file_is_named(protocol, tmp_path, registry):
    (tmp_path / "file").write_text("")
    settings = ExecutionSettings(protocol, tmp_path / "data", tmp_path / "file" / "runs",
                           f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    with pytest.raises(KdbenchError, match=rf"{tmp_path / 'file' / 'runs'} is not writable "
                       r"\(Not a directory\)"):
        run_protocol(settings, registry)

"""Before any Job starts: the folders a run writes to are writable, or one clear message.

A read-only runs folder or MLflow store (a mount gone read-only, another user's folder, a
quota) would otherwise surface mid-Job as a library's traceback (SQLite's "unable to open
database file", nnU-Net's logger). Each folder gets a probe file, created and removed: the only
test that also holds for root, for read-only mounts and for ACLs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kdbench.errors import KdbenchError


def require_writable(folder: Path, what: str, fix: str) -> None:
    """Create ``folder`` if needed and write a probe file in it.

    Raises:
        KdbenchError: naming the folder, what kdbench keeps there, the system's reason and
            ``fix``.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".kdbench-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise KdbenchError(f"{folder} is not writable ({reason}): kdbench keeps {what} there; "
                           f"{fix}") from None


def check_outputs(runs_dir: Path, tracking_uri: str) -> None:
    """The runs folder and, for a local MLflow store, its database folder and artefacts."""
    from kdbench.tracking import local_folders

    require_writable(runs_dir, "each Job's checkpoints and predictions",
                     "choose another --runs-dir (KDBENCH_RUNS_DIR) or make it writable")
    fix = "choose another --tracking-uri (KDBENCH_TRACKING_URI) or make it writable"
    for folder, what in local_folders(tracking_uri):
        require_writable(folder, what, fix)
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        if database.exists() and not os.access(database, os.W_OK):
            raise KdbenchError(f"{database} is not writable (permission denied): kdbench "
                               f"records every Job there; {fix}")

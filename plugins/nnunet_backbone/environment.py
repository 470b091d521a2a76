"""The one place where nnU-Net's environment variables are set.

nnU-Net is steered by ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results``. kdbench
never asks the user to set them: each prepared dataset has its own three folders, and this
context manager points the variables at them only while nnU-Net runs, then restores whatever
was there before, so nothing leaks into the rest of the process. nnunetv2 >= 2.6 reads the
variables when they are used (``nnunetv2.paths._EnvPath``), and worker processes spawned inside
the context inherit them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")

#: Every kdbench dataset lives in its own nnU-Net folders, so one id never collides.
DATASET_ID = 1


@dataclass(frozen=True)
class NnUNetFolders:
    """nnU-Net's three folders under one root, and the dataset's name in them."""

    root: Path
    dataset_name: str

    @classmethod
    def under(cls, root: Path, name: str) -> NnUNetFolders:
        """Folders for dataset ``name`` (made nnU-Net-safe) under ``root``."""
        safe = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "kdbench"
        return cls(Path(root), f"Dataset{DATASET_ID:03d}_{safe}")

    @property
    def raw(self) -> Path:
        return self.root / "nnUNet_raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "nnUNet_preprocessed"

    @property
    def results(self) -> Path:
        return self.root / "nnUNet_results"

    @property
    def raw_dataset(self) -> Path:
        """``nnUNet_raw/DatasetXXX_Name``."""
        return self.raw / self.dataset_name

    @property
    def preprocessed_dataset(self) -> Path:
        """``nnUNet_preprocessed/DatasetXXX_Name``."""
        return self.preprocessed / self.dataset_name


@contextmanager
def nnunet_environment(
    folders: NnUNetFolders, results: Path | None = None, **settings: str
) -> Iterator[NnUNetFolders]:
    """Point nnU-Net's variables at ``folders`` for the duration of the block.

    Args:
        folders: the prepared dataset's nnU-Net folders.
        results: where trainings write (default: ``folders.results``); a Job's own folder.
        settings: other nnU-Net variables for the block, e.g. ``nnUNet_n_proc_DA="0"``.

    Example:
        >>> with nnunet_environment(NnUNetFolders.under(tmp, "phantom")) as f:  # doctest: +SKIP
        ...     extract_fingerprint_dataset(DATASET_ID)
    """
    names = (*VARIABLES, *settings)
    saved = {name: os.environ.get(name) for name in names}
    paths = (folders.raw, folders.preprocessed, Path(results) if results else folders.results)
    for name, path in zip(VARIABLES, paths, strict=True):
        path.mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(path)
    os.environ.update(settings)
    try:
        yield folders
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

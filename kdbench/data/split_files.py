"""A benchmark's splits on disk: JSON written atomically, read back with its hash verified.

The splits themselves are :mod:`kdbench.data.splits`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from kdbench.data.splits import Splits
from kdbench.errors import KdbenchError

_REMAKE = "delete it and rerun `kdbench data prepare`"


def save_splits(splits: Splits, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the splits as JSON, atomically (temporary file, fsync, rename).

    Args:
        splits: the splits.
        path: the JSON file to write (its folder is created if needed).
        overwrite: replace an existing file with different content.

    Returns:
        The path written (unchanged if it already held the same content).

    Raises:
        KdbenchError: the file exists with different content and ``overwrite`` is false.
    """
    path = Path(path)
    text = json.dumps(splits.to_json(), indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    if path.exists():
        if path.read_bytes() == text.encode("ascii"):
            return path
        if not overwrite:
            raise KdbenchError(
                f"{path}: different splits are already saved here; re-running a benchmark "
                "against new splits would mix results, so use --force or delete the file"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target so os.replace is an atomic rename on one file system.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_splits(path: str | Path) -> Splits:
    """Read splits saved by :func:`save_splits`, verifying their hash.

    Raises:
        KdbenchError: the file is missing, malformed, or its hash does not match its content.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KdbenchError(f"{path}: no splits file; run `kdbench data prepare`") from exc
    except (OSError, ValueError) as exc:
        raise KdbenchError(f"{path}: unreadable splits file ({exc}); {_REMAKE}") from exc
    try:
        return Splits.from_json(data)
    except KdbenchError as exc:
        raise KdbenchError(
            f"{path}: the splits file was edited by hand or corrupted ({exc}); {_REMAKE}"
        ) from exc

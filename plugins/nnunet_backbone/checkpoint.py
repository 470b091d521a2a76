"""Reading and writing nnU-Net checkpoints without unpickling code, and without half files.

**Reading.** ``torch.load(weights_only=True)``: tensors, plain containers and numbers, and only
the few numpy types nnU-Net's checkpoints hold (its logger's float32 values, the numpy random
state's uint32 array), allowed by :data:`SAFE_GLOBALS`. Anything else in the pickle, such as
an object whose ``__reduce__`` would run a command, is refused before it is built.

**Writing.** The checkpoint is serialised in memory, written to ``<name>.tmp`` beside the
target, flushed to disk and renamed over the target: a crash at any point leaves the previous
checkpoint whole, and a full disk, a read-only folder or a permission error raises one message
naming the file, with the previous checkpoint intact and the temporary file removed.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.errors import KdbenchError
from kdbench.faults import fault_point

try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1
    from numpy.core import multiarray as _multiarray

_NUMERIC = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
            np.uint64, np.float16, np.float32, np.float64)
#: The non-tensor types nnU-Net's checkpoints (and kdbench's random states) hold: numpy arrays
#: and scalars of numeric types. torch.device, OrderedDict and plain types are allowed by torch.
SAFE_GLOBALS: list[Any] = [_multiarray._reconstruct, np.ndarray, np.dtype, _multiarray.scalar,
                           *(type(np.dtype(t)) for t in _NUMERIC)]


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint read with ``weights_only=True`` and :data:`SAFE_GLOBALS`.

    Raises:
        KdbenchError: the file holds other objects (refused unread: they could run code) or is
            not a checkpoint (truncated, another format).
    """
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).split("WeightsUnpickler error:", 1)[-1].strip().split("\n")[0]
        raise KdbenchError(
            f"checkpoint {path} holds objects other than tensors, numbers and numpy arrays "
            f"({detail}); kdbench does not unpickle them, as they could run code. Delete it "
            "(its Job then trains again) or replace it with a checkpoint kdbench wrote") from None
    except (RuntimeError, EOFError) as exc:
        raise KdbenchError(f"checkpoint {path} cannot be read ({str(exc).splitlines()[0]}); "
                           "delete it (its Job then trains again)") from None


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Write ``checkpoint`` to ``path`` atomically (see the module docstring).

    Raises:
        KdbenchError: the file cannot be written (full disk, read-only folder, permissions).
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        fault_point("checkpoint", file=path.name)  # temporary file written, not yet renamed
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        previous = "the previous one is intact" if path.exists() else "there was none before"
        raise KdbenchError(
            f"cannot write checkpoint {path}: {exc.strerror or exc} ({previous}); free disk "
            "space or make the folder writable, then run again to resume") from None

"""Before any Job starts: the folders a run writes to are writable, and no teacher was
pretrained on a test case, or one clear message.

A read-only runs folder or MLflow store (a mount gone read-only, another user's folder, a
quota) would otherwise surface mid-Job as a library's traceback (SQLite's "unable to open
database file", nnU-Net's logger). Each folder gets a probe file, created and removed: the only
test that also holds for root, for read-only mounts and for ACLs.

A pretrained teacher (``Teacher.pretraining_cases``) declares the cases its weights saw; they
are mapped to the dataset's ids through the release's mapping tables
(``PreparedDataset.aliases``: a BraTS 2018 id to its BraTS 2021 id) and must miss the test set
(:func:`check_pretraining`, run by ``kdbench run`` before the first Job and by every Job before
it trains).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench.errors import KdbenchError

if TYPE_CHECKING:
    from kdbench.data.prepared import PreparedDataset
    from kdbench.data.protocol_data import ProtocolData
    from kdbench.types import Job

#: Overlapping ids named in the message (the count is always given).
SHOWN = 10


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


def dataset_cases(declared: Iterable[str], dataset: PreparedDataset
                  ) -> dict[str, tuple[str, ...]]:
    """Each declared id that names a case of ``dataset`` -> those case ids: the id itself, or
    the cases its release's mapping tables link it to (an id of another release)."""
    cases, aliases = dataset.cases, dataset.aliases
    out = {}
    for cid in declared:
        hits = (cid,) if cid in cases else tuple(c for c in aliases.get(cid, ()) if c in cases)
        if hits:
            out[cid] = hits
    return out


def check_pretraining(jobs: Iterable[tuple[Job, Any]], data: ProtocolData) -> None:
    """Refuse a teacher whose declared pretraining cases include a test case.

    Args:
        jobs: (Job, its strategy instance); those that are not a :class:`kdbench.Teacher` or
            declare no case (trained from scratch, or undeclared and allowed) pass.
        data: the protocol's prepared dataset and splits.

    Raises:
        KdbenchError: naming the Job, its checkpoint, the first overlapping ids (the declared
            id and the dataset's) and their count, and the fix; or the teacher's own refusal
            (no declaration, an unreadable one).
    """
    from kdbench.components.teacher import Teacher

    test = set(data.splits.test)
    seen: set[str] = set()
    for job, strategy in jobs:
        key = json.dumps([job.component, job.hparams], sort_keys=True, default=str)
        if not isinstance(strategy, Teacher) or key in seen:
            continue
        seen.add(key)
        declared = strategy.pretraining_cases()
        if not declared:
            continue
        pairs = [(cid, case) for cid, hits in dataset_cases(declared, data.dataset).items()
                 for case in hits if case in test]
        if pairs:
            raise KdbenchError(_overlap_message(job, pairs, data))


def _overlap_message(job: Job, pairs: list[tuple[str, str]], data: ProtocolData) -> str:
    shown = ", ".join(cid if cid == case else f"{cid} = {case}" for cid, case in pairs[:SHOWN])
    more = f", and {len(pairs) - SHOWN} more" if len(pairs) > SHOWN else ""
    checkpoint = job.hparams.get("checkpoint")
    where = f" from checkpoint {checkpoint}" if checkpoint else ""
    count = len({case for _, case in pairs})
    return (
        f"Job {job.id} ({job.component}, N={job.n}, seed {job.seed}): the teacher{where} was "
        f"trained on {count} case(s) of the test set of {data.dataset.path} (declared id = "
        f"dataset id): {shown}{more}. Its scores, and those of its students, would be "
        "inflated. Use a checkpoint not trained on these cases, or a split whose test set "
        "leaves them out (another split.seed or test_size, or a release without them)")


def pretraining_record(strategy: Any, dataset: PreparedDataset) -> dict[str, Any] | None:
    """What a Job's ``done.json`` says of a teacher's pretraining: whether its training cases
    were declared, how many, and how many of them are cases of the dataset (``None`` for a
    strategy that is not a teacher)."""
    from kdbench.components.teacher import Teacher

    if not isinstance(strategy, Teacher):
        return None
    declared = strategy.pretraining_cases()
    if declared is None:
        return {"declared": False, "declared_cases": None, "in_dataset": None}
    return {"declared": True, "declared_cases": len(declared),
            "in_dataset": len(dataset_cases(declared, dataset))}

"""``job.json``: a Job spec on disk, written by the runner (and the engine) and read back by
``kdbench job run --spec``.

Reading checks the document before anything runs: its layout version, that every Job's id is
the hash of its spec (so an edited hyper-parameter cannot run under the old id), that each
Job's hyper-parameters and modalities are the ones its spec hashed, that every dependency is
present, and that the protocol is a valid one. A Job whose ``tuned`` hyper-parameters are still
pending is refused by the engine, not here: the spec is a faithful copy of the plan.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError
from kdbench.hashing import content_id
from kdbench.types import JOB_SPEC_VERSION, Job, JobSpec, ModalityUse

#: The spec's file name in a Job's folder.
SPEC_FILE = "job.json"


def write_spec(path: Path, spec: JobSpec) -> Path:
    """Write ``spec`` to ``path`` atomically (same bytes for the same spec)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(spec.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_spec(path: Path) -> JobSpec:
    """The Job spec in ``path``.

    Raises:
        KdbenchError: the file is missing or not JSON, or the document is not a consistent
            Job spec (says which field and how to make a new one).
    """
    from pydantic import ValidationError

    from kdbench.protocol.errors import describe_errors
    from kdbench.protocol.models import Protocol

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise KdbenchError(f"{path}: no such Job spec; `kdbench run` writes one per Job in "
                           "its folder (runs/<protocol>/<job id>/job.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KdbenchError(f"{path}: not a Job spec ({exc}); write it again with "
                           "`kdbench run` or `kdbench plan --json`") from None
    if not isinstance(data, dict) or data.get("kdbench_job_spec") != JOB_SPEC_VERSION:
        found = data.get("kdbench_job_spec") if isinstance(data, dict) else None
        raise KdbenchError(f"{path}: field kdbench_job_spec is {found!r}, expected "
                           f"{JOB_SPEC_VERSION}; this is not a Job spec of this kdbench")
    job = _job(path, data.get("job"), "job")
    dependencies = tuple(_job(path, d, f"dependencies[{i}]")
                         for i, d in enumerate(data.get("dependencies") or []))
    known = {d.id for d in dependencies}
    for one in (*dependencies, job):
        missing = sorted(set(one.depends_on.values()) - known)
        if missing:
            raise KdbenchError(f"{path}: Job {one.id} depends on {missing}, which the spec "
                               "does not hold; write it again with `kdbench run`")
    try:
        protocol = Protocol.model_validate(data.get("protocol"))
    except ValidationError as exc:
        lines = "\n".join(f"  {line}" for line in describe_errors(exc, Protocol, None,
                                                                  ("protocol",)))
        raise KdbenchError(f"{path}: field protocol is not a valid protocol:\n{lines}") from None
    return JobSpec(job, dependencies, protocol)


def _job(path: Path, data: Any, where: str) -> Job:
    try:
        job = Job.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise KdbenchError(f"{path}: field {where} is not a Job ({type(exc).__name__}: "
                           f"{exc}); write the spec again with `kdbench run`") from None
    spec = job.spec
    problems = []
    if content_id(spec) != job.id:
        problems.append("its id is not the hash of its spec (was the file edited?)")
    if spec.get("hparams") != job.hparams:
        problems.append("its hparams differ from the ones its spec hashed")
    if spec.get("depends_on") != job.depends_on:
        problems.append("its depends_on differs from the one its spec hashed")
    if ModalityUse.from_json(spec.get("modalities", job.modalities.to_json())) != \
            job.modalities:
        problems.append("its modalities differ from the ones its spec hashed")
    if (spec.get("n"), spec.get("seed")) != (job.n, job.seed):
        problems.append("its n or seed differs from its spec's")
    if problems:
        raise KdbenchError(f"{path}: field {where} (Job {job.id}): {'; '.join(problems)}; "
                           "plan it again (`kdbench plan`) instead of editing a Job spec")
    return job

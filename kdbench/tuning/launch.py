"""``kdbench tune --workers K``: the studies prepared in this process, then K worker processes
(``kdbench tune … --worker-index i``) on them, waited for and summarised."""

from __future__ import annotations

import os
from collections.abc import Callable

from kdbench.engine.execute import ExecutionSettings
from kdbench.errors import KdbenchError
from kdbench.registry import Registry
from kdbench.tuning.summary import StudySummary, summarise
from kdbench.tuning.worker import Tuner

LAUNCHED_ENV = "KDBENCH_TUNE_LAUNCHED"  # set for the workers `--workers K` starts


def launch_workers(settings: ExecutionSettings, registry: Registry, storage: str,
                   progress: Callable[[str], None], workers: int, base: int, heartbeat: int,
                   grace: int) -> list[StudySummary]:
    """Prepare every study here (data, dependency Jobs, studies, parent runs), then run
    ``workers`` worker processes on them and wait for all."""
    import subprocess
    import sys

    from kdbench.tracking import ENV_TRACKING_URI
    from kdbench.tuning.studies import ENV_STORAGE

    tuner = Tuner(settings, registry, storage, progress, workers=workers,
                  worker_index=base * workers, heartbeat=heartbeat, grace=grace)
    for target in tuner.targets:
        tuner.prepare(target)
    command = [sys.executable, "-m", "kdbench", *settings.to_args(), "tune",
               str(settings.protocol_path), "--data-dir", str(settings.data_dir),
               "--runs-dir", str(settings.runs_dir), "--device", settings.device,
               "--data-workers", str(settings.data_workers), "--heartbeat", str(heartbeat),
               "--grace", str(grace), *(["--compile"] if settings.compile else [])]
    # the URLs may hold passwords: passed in the environment, not on command lines
    env = {**os.environ, ENV_STORAGE: storage, ENV_TRACKING_URI: str(settings.tracking_uri),
           LAUNCHED_ENV: "1"}
    indices = [base * workers + j for j in range(workers)]
    progress(f"starting {workers} tuning workers ({', '.join(map(str, indices))})")
    procs = []
    try:
        for index in indices:
            procs.append(subprocess.Popen([*command, "--worker-index", str(index)], env=env))
        codes = [proc.wait() for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    budget = tuner.protocol.tuning.trials
    summaries = [summarise(target, tuner.storage, budget) for target in tuner.targets]
    failed = [f"worker {i} (exit code {code})" for i, code in zip(indices, codes, strict=True)
              if code != 0]
    short = [target.name for target, s in zip(tuner.targets, summaries, strict=True)
             if s is None or s.counted < s.budget]
    if failed and short:
        raise KdbenchError(
            f"tuning stopped: {', '.join(failed)} failed (see the output above) and "
            f"{len(short)} studies are below their budget ({', '.join(short)}); fix the cause "
            "and rerun the same command to continue")
    if failed:
        progress(f"warning: {', '.join(failed)} failed (see the output above); the other "
                 "workers completed every study's budget")
    return [s for s in summaries if s is not None]

"""Which Optuna studies a protocol has, where they live, and what a ``tuned`` Job takes from
them.

One study per (strategy label, scenario, tuning N): its trials train the plan's Job of that
strategy at the tuning N and the protocol's first seed with drawn hyper-parameters, scored by
the validation Dice of that (N, seed) subset. A ``tuned`` Job at any N and seed takes the best
trial's parameters of its study (the one at ``tuning.n``, or at its own N when the protocol
tunes at every N). The study name holds the template Job's id, so an edited protocol (budget,
version, data) never reuses an older study.

Storage: ``KDBENCH_OPTUNA_STORAGE`` or ``--storage``, by default the SQLite file
``optuna/studies.db`` under the working directory — never MLflow's database. Every study of
kdbench is opened through :func:`open_storage`, which accepts three forms:

- ``sqlite:///path.db``: one tuning worker at a time (the single-machine default);
- ``postgresql+psycopg://…`` (or ``postgresql://``, ``mysql…``): Optuna's ``RDBStorage`` with
  a heartbeat (``heartbeat`` / ``grace`` seconds, 60 / 120 by default) and
  ``RetryHeartbeatStaleTrialCallback``: the trial of a worker that stopped beating (killed,
  preempted, lost node) is failed by the next worker that looks and queued again (WAITING) with
  the same parameters, at most :data:`MAX_RETRY` times;
- ``journal:///abs/path/studies.log``: Optuna's ``JournalStorage`` on a file
  (``JournalFileBackend``, symlink lock), for clusters where no database server is allowed.
  Optuna's journal storage has no heartbeat of its own (it does not implement
  ``BaseHeartbeat``); kdbench adds one (:func:`_journal_storage`): each running trial writes
  its wall-clock time as the system attribute ``kdbench.heartbeat`` every ``heartbeat``
  seconds, a RUNNING trial without a beat for ``grace`` seconds is stale, and Optuna's own
  ``fail_stale_trials`` and retry callback then act on it exactly as with PostgreSQL (the
  journal's log order makes "first one to fail it wins", so a stale trial is retried once).
  Clocks of the nodes must agree to well under ``grace`` (NTP).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError
from kdbench.hashing import content_id
from kdbench.registry import Registry
from kdbench.types import Job, Plan, Role
from kdbench.urls import RDB_SCHEMES, display_url

ENV_STORAGE = "KDBENCH_OPTUNA_STORAGE"
HEARTBEAT = 60  # seconds between two heartbeats of a running trial (shared storages)
GRACE = 120  # seconds without a heartbeat after which a RUNNING trial is stale
MAX_RETRY = 3  # times a stale trial's parameters are queued again
HEARTBEAT_ATTR = "kdbench.heartbeat"  # journal storage: a trial's last beat (epoch seconds)
FORMS = ("sqlite:///path/studies.db (one worker), postgresql+psycopg://user:password@host:port/db "
         "(or postgresql://, mysql://), journal:///absolute/path/studies.log")
_OPENED: dict[tuple[str, int, int], Any] = {}


def default_storage(root: Path | None = None) -> str:
    """``KDBENCH_OPTUNA_STORAGE``, else ``sqlite:///<root or cwd>/optuna/studies.db``."""
    from kdbench.tracking import local_store

    return local_store(ENV_STORAGE, "optuna/studies.db", root)


def is_shared(storage: Any) -> bool:
    """Whether an opened storage (see :func:`open_storage`) serves several workers: anything
    but a SQLite URL."""
    return not isinstance(storage, str)


def open_storage(url: Any, *, workers: int = 1, heartbeat: int = HEARTBEAT,
                 grace: int = GRACE) -> Any:
    """The Optuna storage of a URL, for ``optuna.create_study`` / ``load_study``.

    ``sqlite:///…`` is returned as is (one worker); ``postgresql…`` / ``mysql…`` become an
    ``RDBStorage`` and ``journal:///abs/path.log`` a ``JournalStorage``, both with a heartbeat
    every ``heartbeat`` seconds, a ``grace`` period and the retry callback (module docstring).
    An already opened storage object is returned unchanged. One object per (URL, heartbeat,
    grace) and process.

    Args:
        url: the storage URL.
        workers: how many workers will share the storage (or the highest worker index + 1).

    Raises:
        KdbenchError: SQLite for more than one worker, an unknown scheme, a relative journal
            path, ``grace`` not above ``heartbeat``, a missing database driver or an
            unreachable server (each naming the URL, password masked, and the fix).
    """
    if not isinstance(url, str):
        return url
    if url.startswith("sqlite:"):
        if workers > 1:
            raise KdbenchError(
                f"Optuna storage {url} is SQLite, the single-machine default: it serves one "
                "tuning worker at a time, and this is one of several (--workers above 1, or "
                "--worker-index / $SLURM_ARRAY_TASK_ID above 0); its file lock stalls under "
                "several writers and a killed worker's trial could not be told from a live "
                "one. Give the workers a shared storage with --storage: a PostgreSQL URL "
                "(`scripts/cluster/postgres.sh start DIR` starts a server and prints one: "
                "postgresql+psycopg://…), or journal:///absolute/path/studies.log where no "
                "database server is allowed")
        return url
    if heartbeat < 1 or grace <= heartbeat:
        raise KdbenchError(
            f"heartbeat {heartbeat} s and grace {grace} s for Optuna storage {display_url(url)}: "
            "the heartbeat must be at least 1 s and the grace period longer than it (a live "
            "trial would otherwise be failed between two beats); the defaults are "
            f"--heartbeat {HEARTBEAT} --grace {GRACE}")
    key = (url, heartbeat, grace)
    if key not in _OPENED:
        scheme = url.split(":", 1)[0]
        if scheme.split("+", 1)[0] in RDB_SCHEMES and "://" in url:
            _OPENED[key] = _rdb_storage(url, heartbeat, grace)
        elif scheme == "journal":
            _OPENED[key] = _journal_storage(url, heartbeat, grace)
        else:
            raise KdbenchError(f"Optuna storage {display_url(url)!r}: unknown kind of URL; "
                               f"kdbench accepts {FORMS}")
    return _OPENED[key]


def _retry_callback() -> Any:
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def _new_rdb_storage(url: str, heartbeat: int, grace: int, attempts: int = 6) -> Any:
    """``RDBStorage`` on ``url``. Workers started together (a SLURM array) on a fresh database
    all create Optuna's tables at once, and PostgreSQL refuses all but one (a duplicate key in
    its catalogue): the others try again once the tables are there."""
    import random
    import time
    import warnings

    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=heartbeat,
                    grace_period=grace, heartbeat_stale_trial_callback=_retry_callback())
        except sqlalchemy.exc.DBAPIError as exc:
            racing = any(word in str(exc) for word in ("duplicate key", "already exists"))
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random() * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _rdb_storage(url: str, heartbeat: int, grace: int) -> Any:
    import sqlalchemy.exc

    shown = display_url(url)
    try:
        return _new_rdb_storage(url, heartbeat, grace)
    except ImportError as exc:
        reason = exc.__cause__ or exc
        raise KdbenchError(
            f"Optuna storage {shown}: its database driver is not installed ({reason}); install "
            "it, e.g. pip install 'kdbench[cluster]' (psycopg) for postgresql+psycopg://"
        ) from None
    except sqlalchemy.exc.ArgumentError as exc:
        raise KdbenchError(f"Optuna storage {shown}: not a valid database URL ({exc}); kdbench "
                           f"accepts {FORMS}") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise KdbenchError(
            f"Optuna storage {shown}: cannot reach the database ({reason}); start it (e.g. "
            "`scripts/cluster/postgres.sh start DIR` prints the URL of a fresh server) or fix "
            "the URL") from None
    except RuntimeError as exc:
        if "table schema" not in str(exc):
            raise
        raise KdbenchError(
            f"Optuna storage {shown}: the database holds another application's schema version "
            "(an alembic_version table, e.g. MLflow's backend store); give Optuna its own "
            "database (`scripts/cluster/postgres.sh url DIR optuna` creates one)") from None


def _journal_storage(url: str, heartbeat: int, grace: int) -> Any:
    """A ``JournalStorage`` on the file of ``journal:///abs/path``, with kdbench's heartbeat
    (module docstring): Optuna's ``optimize`` starts a beating thread for every trial and
    ``fail_stale_trials`` fails the stale ones, because the storage is a ``BaseHeartbeat``."""
    import contextlib
    import time

    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.trial import TrialState

    path = url[len("journal://"):]
    if not url.startswith("journal:///") or not Path(path).is_absolute():
        raise KdbenchError(f"Optuna storage {url!r}: a journal file needs an absolute path, "
                           "journal:///absolute/path/studies.log (three slashes)")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    callback = _retry_callback()

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        def record_heartbeat(self, trial_id: int) -> None:
            # a trial failed as stale by another worker meanwhile has nothing left to beat for
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            stale = []
            for trial in self.get_all_trials(study_id, deepcopy=False,
                                             states=(TrialState.RUNNING,)):
                # the start counts as a beat: a trial killed before its first one, and a
                # retry, which carries the beats of the trial it retries
                beats = [float(trial.system_attrs.get(HEARTBEAT_ATTR, 0.0))]
                if trial.datetime_start is not None:
                    beats.append(trial.datetime_start.timestamp())
                if now - max(beats) > grace:
                    stale.append(trial._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int:
            return heartbeat

        def get_heartbeat_stale_trial_callback(self) -> Any:
            return callback

    return HeartbeatJournalStorage(JournalFileBackend(path))


@dataclass(frozen=True)
class StudyTarget:
    """One study: the strategy and the plan Job its trials train."""

    name: str
    label: str
    scenario: str
    n: int
    template: Job

    @property
    def role(self) -> Role:
        """The strategy role whose Jobs take this study's values."""
        return Role("strategy", self.label, self.scenario)

    def serves(self, job: Job) -> bool:
        """Whether the ``tuned`` Job ``job`` takes this study's values: a Job of its strategy
        label and scenario, at any N and seed, whose budget names this study's N."""
        return job.pending_tuning and job.has_role(self.role) and \
            job.hparams["tuned"]["n"] == self.n

    @property
    def folder_name(self) -> str:
        """The study name as a folder name."""
        return self.name.replace("/", "_")


def study_targets(plan: Plan, registry: Registry) -> list[StudyTarget]:
    """Every study of the protocol, in protocol order (strategies, scenarios, N)."""
    protocol = plan.protocol
    if protocol.tuning is None:
        return []
    seed = protocol.seeds[0]
    sizes = (protocol.tuning.n,) if protocol.tuning.n else protocol.training_sizes
    targets = []
    for spec in protocol.strategies:
        if spec.hparams != "tuned":
            continue
        for scenario in protocol.scenarios:
            for n in sizes:
                template = _job_with_role(plan, Role("strategy", spec.key, scenario.name), n,
                                          seed)
                if template is None:
                    raise KdbenchError(
                        f"strategy {spec.key!r} is tuned at N={n}, but the plan has no Job of it "
                        f"at N={n} (scenario {scenario.name!r}, seed {seed}); list N={n} in "
                        "training_sizes so that its teacher and generator Jobs exist")
                if not search_space(template, registry):
                    raise KdbenchError(
                        f"strategy {spec.key!r} is `tuned` but {template.component!r} declares "
                        "no search space (no hyper-parameter with a range or choices); give "
                        "its hparams instead of 'tuned'")
                name = f"{protocol.name}/{spec.key}/{scenario.name}/N{n}/{template.id[:8]}"
                targets.append(StudyTarget(name, spec.key, scenario.name, n, template))
    return targets


def _job_with_role(plan: Plan, role: Role, n: int, seed: int) -> Job | None:
    return next((j for j in plan.jobs if j.has_role(role) and j.n == n and j.seed == seed),
                None)


def search_space(job: Job, registry: Registry) -> dict[str, Any]:
    """The tunable hyper-parameters of a Job's strategy (name -> HParam), sorted."""
    from kdbench.components.hparams import search_space as tunable

    declared = registry.strategies.get(job.component).hparams
    return {name: declared[name] for name in tunable(declared)}


def trial_job(template: Job, hparams: dict[str, Any]) -> Job:
    """The template Job with concrete hyper-parameters: the Job a plan would hold for them."""
    spec = {**template.spec, "hparams": hparams}
    return dataclasses.replace(template, id=content_id(spec), hparams=hparams, spec=spec)


def make_sampler(kind: str, seed: int, *, shared: bool = False) -> Any:
    """TPE (default) or random, seeded. ``shared``: several workers draw at once, so TPE
    treats the other workers' running trials as bad ("constant liar") instead of drawing
    next to them."""
    import warnings

    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if not shared:
        return optuna.samplers.TPESampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(kind: str, epochs: int) -> Any:
    """Hyperband over epochs 1..``epochs`` (reduction factor 3), the median rule (from the
    second trial and the second epoch), or none."""
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
    if kind == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1),
                                          reduction_factor=3)

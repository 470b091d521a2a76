"""Several tuning workers on one shared Optuna storage: the storage URLs kdbench opens, SQLite
refused for several workers, the budget claim, a journal file shared by two workers, and
(marked ``cluster``) four workers on a real PostgreSQL with one of them SIGKILLed mid-trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

import optuna
import pytest
from helpers import phantom_protocol, run_cli

from kdbench.errors import KdbenchError
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.tuning.studies import (
    HEARTBEAT_ATTR,
    MAX_RETRY,
    display_url,
    open_storage,
    study_targets,
)
from kdbench.tuning.summary import SURPLUS_ATTR
from kdbench.tuning.worker import (
    HOST_ATTR,
    WORKER_ATTR,
    SurplusTrial,
    Tuner,
    _QuietSurplus,
)

TRAINING = {"epochs": 2, "iterations_per_epoch": 2, "val_iterations": 1}
COUNTED = ("COMPLETE", "PRUNED")


def _protocol(root, name, trials):
    return phantom_protocol(root, name, strategies=[{"name": "kd", "hparams": "tuned"}],
                            backbone={"name": "nnunet"},
                            tuning={"trials": trials, "pruner": "none", "seed": 0},
                            training=TRAINING, statistics={"baseline": None})


@pytest.fixture(scope="module")
def shared(tmp_path_factory, registry):
    """One folder whose prepared phantom (and kd's teacher, once trained) the tests share."""
    from kdbench.data.protocol_data import ensure_data

    root = tmp_path_factory.mktemp("shared_tuning")
    path = _protocol(root, "data_only", 1)
    ensure_data(load_protocol(path, registry), registry, root / "data")
    return root


def _worker_command(root, path, *args):
    return [sys.executable, "-m", "kdbench", "tune", str(path), "--data-dir", str(root / "data"),
            "--runs-dir", str(root / "runs"), "--tracking-uri",
            f"sqlite:///{root / 'mlflow.db'}", *args]


def _env(storage):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KDBENCH_") and k != "SLURM_ARRAY_TASK_ID"}
    return {**env, "KDBENCH_OPTUNA_STORAGE": storage}


def _study(storage, name):
    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:
        return None


# --- storage URLs ------------------------------------------------------------------------------

def test_sqlite_is_returned_as_is_for_one_worker(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert open_storage(url) == url
    assert display_url(url) == url


def test_sqlite_is_refused_for_several_workers(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    with pytest.raises(KdbenchError) as error:
        open_storage(url, workers=2)
    message = str(error.value)
    assert url in message and "single-machine default" in message
    assert "scripts/cluster/postgres.sh start DIR" in message and "postgresql+psycopg://" in message
    assert "journal:///" in message


@pytest.mark.parametrize("url", ["redis://localhost:6379", "studies.db", "journal://rel.log"])
def test_unknown_or_malformed_urls_name_the_accepted_forms(url):
    with pytest.raises(KdbenchError) as error:
        open_storage(url)
    message = str(error.value)
    assert url in message and "journal:///" in message
    if url.startswith("journal"):
        assert "absolute path" in message
    else:
        assert "postgresql+psycopg://" in message and "sqlite:///" in message


def test_grace_must_exceed_the_heartbeat(tmp_path):
    with pytest.raises(KdbenchError, match="grace period longer"):
        open_storage(f"journal:///{tmp_path}/s.log", heartbeat=10, grace=10)


def test_an_unreachable_database_is_named_without_its_password():
    url = "postgresql+psycopg://kdbench:secret@127.0.0.1:1/kdbench"
    with pytest.raises(KdbenchError) as error:
        open_storage(url)
    message = str(error.value)
    assert "127.0.0.1:1" in message and "secret" not in message and "***" in message


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_journal_storage_beats_and_its_stale_trials_are_retried_once(tmp_path):
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.storages.journal import JournalStorage

    log = tmp_path / "sub" / "studies.log"
    storage = open_storage(f"journal://{log}", heartbeat=2, grace=4)
    assert isinstance(storage, JournalStorage) and is_heartbeat_enabled(storage)
    assert log.exists() and storage.get_heartbeat_interval() == 2
    callback = storage.get_heartbeat_stale_trial_callback()
    assert isinstance(callback, RetryHeartbeatStaleTrialCallback)
    assert callback._max_retry == MAX_RETRY
    assert open_storage(f"journal://{log}", heartbeat=2, grace=4) is storage  # one per process

    study = optuna.create_study(study_name="s", storage=storage)
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    long_ago = datetime.now() - timedelta(seconds=10)
    dead = storage.create_new_trial(study._study_id, template_trial=optuna.trial.FrozenTrial(
        number=0, state=optuna.trial.TrialState.RUNNING, value=None, datetime_start=long_ago,
        datetime_complete=None, params={"x": 0.25}, distributions={"x": distribution},
        user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=0))
    storage.record_heartbeat(dead)
    storage.set_trial_system_attr(dead, HEARTBEAT_ATTR, time.time() - 10)  # its last beat
    live = storage.create_new_trial(study._study_id)
    storage.set_trial_system_attr(live, HEARTBEAT_ATTR, time.time() - 10)  # just started
    optuna.storages.fail_stale_trials(study)
    assert [t.state.name for t in study.trials] == ["FAIL", "RUNNING", "WAITING"]
    for _ in range(2):  # a later look (another worker) fails nothing more
        optuna.storages.fail_stale_trials(study)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "RUNNING", "WAITING"]
    retry = study.trials[2]
    assert retry.params == {"x": 0.25} and retry.system_attrs["failed_trial"] == 0


# --- the budget claim ------------------------------------------------------------------------

def _claimer():
    tuner = object.__new__(Tuner)
    tuner.worker_index, tuner._quiet = 3, _QuietSurplus()
    return tuner


def test_a_trial_beyond_the_budget_gives_way_to_earlier_ones():
    tuner = _claimer()
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    first, second, third = (study.ask() for _ in range(3))
    assert tuner._claim(study, first, 3) == (1, 0, None)
    assert tuner._claim(study, second, 3) == (1, 1, None)
    with pytest.raises(SurplusTrial, match="budget of 3"):
        tuner._claim(study, third, 3)
    attrs = study._storage.get_trial(third._trial_id).user_attrs
    assert attrs[SURPLUS_ATTR] is True and attrs[WORKER_ATTR] == 3
    assert tuner._quiet.numbers == {third.number}  # Optuna's warning about it is dropped
    assert attrs[HOST_ATTR].endswith(f":{os.getpid()}")
    # the earlier ones end (one failed): the budget has room again for a later trial
    study.tell(first, 0.7)
    study.tell(second, state=optuna.trial.TrialState.FAIL)
    study.tell(third, state=optuna.trial.TrialState.FAIL)
    assert tuner._claim(study, study.ask(), 3) == (2, 0, None)


def test_a_surplus_retry_is_queued_again():
    tuner = _claimer()
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    running = study.ask()
    x = optuna.distributions.FloatDistribution(0.0, 1.0)
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, params={"x": 0.25}, distributions={"x": x},
        system_attrs={"failed_trial": 0, "retry_history": [0]}))
    retry = study.ask()  # the WAITING retry is popped first
    assert retry.number == 2 and retry.params == {"x": 0.25}
    assert tuner._claim(study, retry, 3) == (1, 1, 0)  # room for it: it runs
    with pytest.raises(SurplusTrial):
        tuner._claim(study, retry, 2)  # no room: it gives way and is queued again
    study.tell(retry, state=optuna.trial.TrialState.FAIL)
    queued = study.trials[-1]
    assert queued.state.name == "WAITING" and queued.params == {"x": 0.25}
    assert queued.system_attrs["failed_trial"] == 0 and SURPLUS_ATTR not in queued.user_attrs
    assert running.number == 1


# --- workers on SQLite and on a journal file --------------------------------------------------

def test_sqlite_with_several_workers_is_refused(tmp_path, registry):
    path = _protocol(tmp_path, "sqlite_workers", 2)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    for args, env in ((["--workers", "2"], None), ([], {"SLURM_ARRAY_TASK_ID": "1"})):
        out = run_cli("tune", str(path), "--storage", storage, *args, env=env, cwd=tmp_path)
        assert out.returncode != 0
        message = " ".join(out.stderr.split())
        assert storage in message and "single-machine default" in message
        assert "postgres.sh start DIR" in message and "journal:///" in message
    assert not (tmp_path / "data").exists()  # refused before preparing anything


@pytest.mark.cluster
def test_two_workers_share_a_journal_file(shared, registry):
    path = _protocol(shared, "journal_workers", 2)
    storage = f"journal://{shared / 'journal' / 'studies.log'}"
    (target,) = study_targets(build_plan(load_protocol(path, registry), registry), registry)
    logs = [open(shared / f"journal-worker-{i}.log", "w") for i in range(2)]  # noqa: SIM115
    first = subprocess.Popen(_worker_command(shared, path, "--worker-index", "0", "--heartbeat",
                                             "2", "--grace", "6"),
                             cwd=shared, env=_env(storage), stdout=logs[0], stderr=logs[0])
    deadline = time.monotonic() + 300  # worker 0 trains kd's teacher first (a second worker
    while time.monotonic() < deadline and first.poll() is None:  # would wait for it)
        study = _study(storage, target.name)
        if study is not None and study.trials:
            break
        time.sleep(1.0)
    second = subprocess.Popen(_worker_command(shared, path, "--worker-index", "1", "--heartbeat",
                                              "2", "--grace", "6"),
                              cwd=shared, env=_env(storage), stdout=logs[1], stderr=logs[1])
    codes = [proc.wait(timeout=600) for proc in (first, second)]
    for log in logs:
        log.close()
    output = [(shared / f"journal-worker-{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], output
    study = _study(storage, target.name)
    states = [t.state.name for t in study.trials]
    assert sum(state in COUNTED for state in states) == 2  # exactly the budget
    assert all(t.user_attrs.get(SURPLUS_ATTR) for t in study.trials if t.state.name == "FAIL")
    assert {t.user_attrs[WORKER_ATTR] for t in study.trials} <= {0, 1}
    assert all(HEARTBEAT_ATTR in t.system_attrs for t in study.trials)
    shown = run_cli("tune", str(path), "--show", "--storage", storage, cwd=shared)
    assert shown.returncode == 0 and "2/2 trials" in shown.stdout, shown.stderr


# --- PostgreSQL -------------------------------------------------------------------------------

@pytest.mark.cluster
def test_postgresql_storage_has_the_heartbeat_and_the_retry(postgres_url):
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    storage = open_storage(postgres_url, heartbeat=2, grace=4)
    assert isinstance(storage, RDBStorage)
    assert (storage.heartbeat_interval, storage.grace_period) == (2, 4)
    callback = storage.get_heartbeat_stale_trial_callback()
    assert isinstance(callback, RetryHeartbeatStaleTrialCallback)
    assert callback._max_retry == MAX_RETRY
    assert open_storage(postgres_url, heartbeat=2, grace=4) is storage
    assert "***" in display_url(postgres_url) and postgres_url not in display_url(postgres_url)
    assert open_storage(postgres_url, workers=4) is not None  # several workers are fine


@pytest.mark.cluster
def test_a_database_with_another_applications_schema_is_named(postgres_database):
    """Optuna and MLflow both keep an alembic_version table: sharing one database fails with
    Optuna's cryptic "no longer compatible"; kdbench says what is wrong and what to do."""
    import sqlalchemy as sa

    url = postgres_database("like_mlflow")
    with sa.create_engine(url).begin() as connection:
        connection.execute(sa.text("create table alembic_version "
                                   "(version_num varchar(32) primary key)"))
        connection.execute(sa.text("insert into alembic_version values ('1b5f0d9ad7c1')"))
    with pytest.raises(KdbenchError, match="another application's schema version") as raised:
        open_storage(url, heartbeat=2, grace=4)
    assert "postgres.sh url DIR optuna" in str(raised.value)
    assert url not in str(raised.value)  # the password is masked


OPEN_AT = """
import sys, time
from kdbench.tuning.studies import open_storage
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
open_storage(sys.argv[1], workers=4, heartbeat=2, grace=4)
"""


@pytest.mark.cluster
def test_workers_opening_a_fresh_database_at_once_all_get_the_storage(postgres_database):
    """A SLURM array's workers start together and each creates Optuna's tables: PostgreSQL
    lets one win, the others retry."""
    url = postgres_database("fresh_race")
    start = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT, url, start],
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, "\n".join(errors)


@pytest.mark.cluster
def test_four_workers_one_killed_keep_the_budget_exact(postgres_url, shared, registry):
    from mlflow.tracking import MlflowClient

    budget = 6
    path = _protocol(shared, "four_workers", budget)
    (target,) = study_targets(build_plan(load_protocol(path, registry), registry), registry)
    log_path = shared / "four_workers.log"
    with open(log_path, "w") as log:
        launcher = subprocess.Popen(
            _worker_command(shared, path, "--workers", "4", "--heartbeat", "2", "--grace", "4"),
            cwd=shared, env=_env(postgres_url), stdout=log, stderr=subprocess.STDOUT)
        victim = None
        deadline = time.monotonic() + 400
        while victim is None and time.monotonic() < deadline and launcher.poll() is None:
            study = _study(postgres_url, target.name)
            for trial in study.trials if study is not None else []:
                if (trial.state.name == "RUNNING" and HOST_ATTR in trial.user_attrs
                        and len(trial.params) == 4):  # claimed and drawn: training starts
                    victim = trial
                    break
            time.sleep(0.5)
        assert victim is not None, log_path.read_text()
        time.sleep(2.0)  # into its training (MLflow run created, heartbeats recorded)
        os.kill(int(victim.user_attrs[HOST_ATTR].rsplit(":", 1)[1]), signal.SIGKILL)
        code = launcher.wait(timeout=900)
    output = log_path.read_text()
    worker = victim.user_attrs[WORKER_ATTR]
    assert code == 0, output  # the other workers completed the budget
    assert f"worker {worker} (exit code -9) failed" in " ".join(output.split())

    study = _study(postgres_url, target.name)
    trials = study.trials
    counted = [t for t in trials if t.state.name in COUNTED]
    assert len(counted) == budget  # no overshoot, nothing lost
    failed = [t for t in trials if t.state.name == "FAIL" and SURPLUS_ATTR not in t.user_attrs]
    assert [t.number for t in failed] == [victim.number]  # only the killed trial failed
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert any(t.state.name in COUNTED for t in retries)  # retried, with the same parameters,
    assert all(t.params == victim.params for t in retries)  # and completed
    assert all(t.state.name in (*COUNTED, "WAITING") or t.user_attrs.get(SURPLUS_ATTR)
               for t in retries)
    drawn = [tuple(sorted(t.params.items())) for t in counted]
    assert len(set(drawn)) == len(drawn)  # the retry ran once; workers drew different values
    assert len({t.user_attrs[WORKER_ATTR] for t in counted}) >= 2

    client = MlflowClient(f"sqlite:///{shared / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("kdbench/four_workers/tuning")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    killed = [r for r in runs if r.data.tags.get("kdbench.trial") == str(victim.number)]
    assert [(r.info.status, r.data.tags["kdbench.optuna_state"]) for r in killed] == [
        ("KILLED", "FAIL")]
    assert any(r.data.tags.get("kdbench.retry_of") == str(victim.number)
               and r.data.tags["kdbench.optuna_state"] in COUNTED for r in runs)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.metrics["trials_failed"] == 1
    assert sum(r.data.tags.get("kdbench.optuna_state") in COUNTED for r in runs) == budget

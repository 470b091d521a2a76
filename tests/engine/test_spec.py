"""The Job spec (``job.json``): the one thing that crosses from planning into execution.

A spec runs without its protocol file; an edited one is refused; a ``tuned`` Job carries its
finished study's best values (so its id follows them) and is refused while the study runs."""

from __future__ import annotations

import json

import optuna
import pytest
from helpers import phantom_protocol, prepared_source, run_cli

from kdbench.engine.execute import ExecutionSettings, execute_job
from kdbench.engine.spec import read_spec, write_spec
from kdbench.errors import KdbenchError
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.tracking import Tracker
from kdbench.tuning.resolved import resolved_plan
from kdbench.tuning.studies import search_space, study_targets


def _plan(tmp_path, registry, name, **fields):
    fields.setdefault("backbone", {"name": "nnunet"})
    path = phantom_protocol(tmp_path, name, statistics={}, **fields)
    return path, build_plan(load_protocol(path, registry), registry)


def test_a_spec_round_trips_and_holds_every_dependency(tmp_path, registry):
    _, plan = _plan(tmp_path, registry, "roundtrip", strategies=[{"name": "kd"}])
    teacher, student = plan.jobs
    spec = plan.spec(student.id)
    assert [j.id for j in spec.dependencies] == [teacher.id]
    back = read_spec(write_spec(tmp_path / "job.json", spec))
    assert back.job == student and back.dependencies == (teacher,)
    assert back.protocol == plan.protocol
    assert back.to_json() == spec.to_json()
    assert plan.spec(teacher.id).dependencies == ()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: [h.update(kd_weight=0.5) for h in (d["job"]["spec"]["hparams"],
                                                   d["job"]["hparams"])],
     "its id is not the hash"),
    (lambda d: d["job"].update(hparams={"kd_weight": 0.5}), "hparams differ"),
    (lambda d: d.update(dependencies=[]), "depends on"),
    (lambda d: d.update(kdbench_job_spec=7), "field kdbench_job_spec is 7"),
    (lambda d: d["protocol"].update(training_sizes=[]), "field protocol is not a valid"),
    (lambda d: d["job"].pop("modalities"), "field job is not a Job"),
])
def test_an_edited_spec_is_refused_with_the_field(tmp_path, registry, edit, message):
    _, plan = _plan(tmp_path, registry, "edited", strategies=[{"name": "kd"}])
    path = write_spec(tmp_path / "job.json", plan.spec(plan.jobs[-1].id))
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(KdbenchError, match=message):
        read_spec(path)


def test_job_run_from_a_spec_needs_no_protocol_file(tmp_path, registry, prepared_phantom):
    path, plan = _plan(tmp_path, registry, "spec_only", strategies=[{"name": "mono"}],
                       dataset=prepared_source(prepared_phantom),
                       training={"epochs": 1, "iterations_per_epoch": 1, "val_iterations": 1})
    (job,) = plan.jobs
    spec = write_spec(tmp_path / "elsewhere" / "job.json", plan.spec(job.id))
    path.unlink()  # the protocol file is gone
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_cli("job", "run", "--spec", str(spec), "--data-dir",
                  str(prepared_phantom.path.parent), "--runs-dir", str(tmp_path / "runs"),
                  "--tracking-uri", uri, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run = Tracker(plan, uri).complete_run(job)
    assert run is not None and run.data.metrics["test_dice_WT"] >= 0
    shipped = json.loads((tmp_path / "runs" / "spec_only" / job.id / "job.json").read_text())
    assert shipped == json.loads(spec.read_text())  # the engine records the spec it ran

    bad = run_cli("job", "run", "--spec", str(tmp_path / "missing.json"), cwd=tmp_path)
    assert bad.returncode == 2 and "no such Job spec" in bad.stderr
    assert "Traceback" not in bad.stderr
    both = run_cli("job", "run", "x.yaml", "--spec", str(spec), cwd=tmp_path)
    assert both.returncode == 2 and "give either --spec" in both.stderr
    assert "Traceback" not in both.stderr


def test_a_tuned_job_takes_its_finished_studys_best_values(tmp_path, registry):
    _, plan = _plan(tmp_path, registry, "resolve", strategies=[{"name": "kd",
                                                                 "hparams": "tuned"}],
                    tuning={"trials": 2, "seed": 0})
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    (target,) = study_targets(plan, registry)
    placeholder = target.template
    assert placeholder.pending_tuning
    study = optuna.create_study(study_name=target.name, storage=storage,
                                direction="maximize")
    space = search_space(placeholder, registry)
    kd = registry.strategies.get("kd")

    def trial(value):
        asked = study.ask()
        params = {name: hp.suggest(asked, name) for name, hp in space.items()}
        study.tell(asked, value)
        return kd.resolve_hparams(params)

    def kd_job(resolved):
        return next(j for j in resolved.jobs if j.component == "kd")

    first = trial(0.5)
    half = resolved_plan(plan, registry, storage)  # 1 of 2 trials: still the placeholder
    assert kd_job(half) == placeholder
    with pytest.raises(KdbenchError, match="planned before its study finished"):
        execute_job(half.spec(placeholder.id), ExecutionSettings(runs_dir=tmp_path / "runs"),
                    registry)
    assert not (tmp_path / "runs").exists()  # refused before anything is written

    trial(0.2)
    job = kd_job(resolved_plan(plan, registry, storage))
    assert not job.pending_tuning and job.id != placeholder.id
    assert job.hparams == first and job.spec["hparams"] == first
    assert job.tuned_study == target.name and job.spec["tuned"]["trial"] == 0
    assert job.depends_on == placeholder.depends_on  # the same teacher Job

    better = trial(0.9)  # the study went on: a new best, a new Job
    again = kd_job(resolved_plan(plan, registry, storage))
    assert again.hparams == better and again.id not in (job.id, placeholder.id)

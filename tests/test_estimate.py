"""GPU-hour estimates (kdbench/estimate.py, ``kdbench plan --estimate``).

Costs are checked against arithmetic written out here from the calibration file; the naive
grid against a count of the protocol's cells; the pruner simulation against Optuna's own
pruners driven trial by trial.
"""

from __future__ import annotations

import json
import random

import pytest
from helpers import ROOT, run_cli

from kdbench.calibration import (
    REFERENCE_CALIBRATION,
    calibration_path,
    load_calibration,
    save_calibration,
)
from kdbench.errors import KdbenchError
from kdbench.estimate import estimate
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.tuning.pruning import pruned_fraction, trial_epochs

CURVE = ROOT / "protocols" / "brats2021_learning_curve.yaml"


@pytest.fixture(scope="module")
def curve(registry):
    plan = build_plan(load_protocol(CURVE, registry), registry)
    return plan, estimate(plan, registry, load_calibration())


def test_job_costs_are_steps_times_iterations(curve):
    plan, cost = curve
    ref = json.loads(REFERENCE_CALIBRATION.read_text())
    step, case = ref["step_ms"], ref["case_s"]
    epochs, iterations, val = 1000, 250, 50  # the protocol's training section
    per_case_h = 251 * (case["predict"] + case["score"]) / 3600
    validation_h = epochs * val * step["validation"] / 3.6e6

    # nnU-Net's CPU augmentation (the protocol's): one batch every cpu_augment_s / workers
    loader_ms = 1e3 * ref["input"]["cpu_augment_s"] / ref["input"]["data_workers"]

    def expected(model_ms: float) -> float:
        return (epochs * iterations * max(model_ms, loader_ms) / 3.6e6 + validation_h
                + per_case_h)

    by_component = {}
    for job in plan.jobs:
        by_component.setdefault(job.component, job)
    mono, multi, kd = (cost.job(by_component[c].id) for c in ("mono", "multi", "kd"))
    assert mono.total_h == pytest.approx(expected(step["student"]))
    assert multi.total_h == pytest.approx(expected(step["train"]))
    assert kd.total_h == pytest.approx(expected(step["kd"]))  # 1 channel + the teacher
    assert kd.step_ms > mono.step_ms
    assert loader_ms > step["kd"]  # on BraTS the CPU loader bounds every Job: the GPU waits
    assert mono.iteration_ms == kd.iteration_ms == pytest.approx(loader_ms)
    assert cost.total_h == pytest.approx(sum(cost.job(j.id).total_h for j in plan.jobs))


def test_gpu_augmentation_and_compile(curve, registry):
    plan, as_written = curve
    ref = json.loads(REFERENCE_CALIBRATION.read_text())
    step, feed = ref["step_ms"], ref["input"]
    fast = estimate(plan, registry, load_calibration(), augmentation="gpu", compile=True)
    scale = step["train_compiled"] / step["train"]
    by_component = {}
    for job in plan.jobs:
        by_component.setdefault(job.component, job)
    mono, multi, kd = (fast.job(by_component[c].id) for c in ("mono", "multi", "kd"))
    # compiled figures; the GPU augmentation adds its time to every step
    assert multi.iteration_ms == pytest.approx(step["train_compiled"] + feed["gpu_augment_ms"])
    assert mono.iteration_ms == pytest.approx(step["student"] * scale + feed["gpu_augment_ms"])
    assert kd.iteration_ms == pytest.approx(step["kd_compiled"] + feed["gpu_augment_ms"])
    assert multi.train_h == pytest.approx(1000 * 250 * multi.iteration_ms / 3.6e6)
    # the naive grid is nnU-Net's own trainer either way: the same hours
    assert fast.naive_h == pytest.approx(as_written.naive_h)
    assert fast.naive.augmentation == "nnunet" and fast.naive.compile is True
    # the savings add up to the difference, and the fast paths meet P4's goal here
    assert (fast.sharing_saved_h + fast.pruning_saved_h + fast.pipeline_saved_h
            == pytest.approx(fast.naive_h - fast.total_h))
    assert fast.pipeline_saved_h > 0 and as_written.pipeline_saved_h == pytest.approx(0, abs=1e-9)
    assert fast.ratio <= 0.4 < as_written.ratio
    with pytest.raises(KdbenchError, match="augmentation 'cpu'"):
        estimate(plan, registry, load_calibration(), augmentation="cpu")


def test_without_input_figures_the_loader_keeps_up(curve, registry, tmp_path):
    plan, _ = curve
    data = json.loads(REFERENCE_CALIBRATION.read_text())
    del data["input"]
    del data["step_ms"]["kd_compiled"]
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(data))
    calibration = load_calibration(path)
    assert not calibration.compiled and calibration.input == {}
    cost = estimate(plan, registry, calibration)
    mono = next(cost.job(j.id) for j in plan.jobs if j.component == "mono")
    assert mono.iteration_ms == mono.step_ms == data["step_ms"]["student"]
    assert cost.naive.compile is False  # nothing says what compiling costs
    with pytest.raises(KdbenchError, match="no compiled step figures"):
        estimate(plan, registry, calibration, compile=True)


def test_naive_grid_trains_a_teacher_per_student_cell(curve):
    plan, cost = curve
    cells = 7 * 3 * 2  # N x seeds x scenarios
    # per cell: mono, multi, kd and kd's own multi teacher
    assert cost.naive_trainings == cells * 4
    assert len(plan.jobs) == 7 * 3 * 5  # shared: one multi per (N, seed) for both scenarios
    by = {}
    for job in plan.jobs:
        by.setdefault((job.component, job.n, job.seed), []).append(cost.job(job.id).total_h)
    naive = sum(sum(by[("mono", n, s)]) + 2 * by[("multi", n, s)][0] * 2 + sum(by[("kd", n, s)])
                for (component, n, s) in by if component == "multi")
    assert cost.naive_h == pytest.approx(naive)
    assert cost.ratio == pytest.approx(cost.total_h / naive) and 0 < cost.ratio < 1
    assert cost.studies == [] and cost.tuning_h == 0


@pytest.mark.parametrize("pruner,epochs,every", [("hyperband", 30, 1), ("hyperband", 40, 3),
                                                 ("median", 12, 1), ("median", 12, 4)])
def test_pruner_simulation_matches_optuna(pruner, epochs, every):
    import optuna

    from kdbench.tuning.studies import make_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(7)
    qualities = [rng.random() for _ in range(25)]
    study = optuna.create_study(study_name="p/kd/t1ce/N12/abcd", direction="maximize",
                                pruner=make_pruner(pruner, epochs))
    trained = []
    for q in qualities:
        trial = study.ask()
        done = epochs
        for epoch in range(epochs):
            if (epoch + 1) % every and epoch != epochs - 1:
                continue
            trial.report(q, epoch)
            if trial.should_prune():
                done = epoch + 1
                break
        study.tell(trial, q if done == epochs else None,
                   state=optuna.trial.TrialState.COMPLETE if done == epochs
                   else optuna.trial.TrialState.PRUNED)
        trained.append(done)
    assert trial_epochs(pruner, epochs, every, qualities, "p/kd/t1ce/N12/abcd") == trained
    assert min(trained) < epochs  # something was pruned: the comparison is not vacuous


def test_pruned_fractions():
    assert pruned_fraction("none", 1000, 10, 30) == 1.0
    hyperband = pruned_fraction("hyperband", 1000, 10, 30)
    assert 0 < hyperband < 1 and 0 < pruned_fraction("median", 1000, 10, 30) < 1
    assert pruned_fraction("hyperband", 1000, 10, 200) < hyperband  # more trials, more pruned


def test_calibration_files_round_trip_and_bad_fields_are_named(tmp_path):
    reference = load_calibration()
    assert reference.reference and "REFERENCE" in reference.label
    path = save_calibration(reference, tmp_path)
    assert path == calibration_path(reference.device, tmp_path)
    assert load_calibration(path).step_ms == reference.step_ms
    data = json.loads(path.read_text())
    data["step_ms"]["kd"] = "fast"
    path.write_text(json.dumps(data))
    with pytest.raises(KdbenchError, match=r"step_ms\.kd must be a number"):
        load_calibration(path)
    with pytest.raises(KdbenchError, match="not found"):
        load_calibration(tmp_path / "nope.json")
    data = json.loads(REFERENCE_CALIBRATION.read_text())
    del data["input"]["data_workers"]
    path.write_text(json.dumps(data))
    with pytest.raises(KdbenchError, match="'input' needs all of .*missing data_workers"):
        load_calibration(path)


def test_plan_estimate_cli(tmp_path):
    done = run_cli("plan", str(CURVE), "--estimate", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    est = report["estimate"]
    assert len(est["jobs"]) == len(report["jobs"]) == 105
    assert est["total_gpu_hours"] == pytest.approx(sum(j["total_h"] for j in est["jobs"]))
    assert est["naive"]["trainings"] == 168 and est["calibration"]["reference"] is True
    assert est["saved"]["sharing_gpu_hours"] + est["saved"]["pipeline_gpu_hours"] == \
        pytest.approx(est["naive"]["gpu_hours"] - est["total_gpu_hours"])
    fast = json.loads(run_cli("plan", str(CURVE), "--estimate", "--json", "--augmentation",
                              "gpu", "--compile").stdout)["estimate"]
    assert fast["pipeline"] == {"augmentation": "gpu", "compile": True}
    assert fast["total_gpu_hours"] < est["total_gpu_hours"]
    table = run_cli("plan", str(CURVE), "--estimate")
    assert "GPU-h" in table.stdout and "naive grid" in table.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    refused = run_cli("plan", str(CURVE), "--estimate", "--calibration", str(bad))
    assert refused.returncode != 0 and "not a kdbench calibration" in refused.stderr


def test_tuning_studies_cost_trials_and_pruning_saves(registry, demo_data, write_protocol):
    demo_data["strategies"][2]["hparams"] = "tuned"  # kd
    demo_data["tuning"] = {"trials": 8, "n": 12, "pruner": "hyperband"}
    plan = build_plan(load_protocol(write_protocol(demo_data), registry), registry)
    cost = estimate(plan, registry, load_calibration())
    assert len(cost.studies) == 1  # one tuned strategy, one scenario, N = 12
    study = cost.studies[0]
    template = next(j for j in plan.jobs if j.component == "kd" and j.n == 12
                    and j.seed == plan.protocol.seeds[0])
    trial = cost.job(template.id)
    assert study.trial_h == pytest.approx(trial.train_h + trial.validation_h)  # no inference
    assert study.fraction == pruned_fraction("hyperband", 25, 1, 8, study.name) < 1
    assert cost.tuning_h == pytest.approx(8 * study.trial_h * study.fraction)
    assert cost.naive_h - cost.naive_jobs_h == pytest.approx(8 * study.trial_h)

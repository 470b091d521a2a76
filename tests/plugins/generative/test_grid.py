"""Synthesis and generative KD end to end on the phantom: plan, shared Jobs, records."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from helpers import phantom_protocol, prepared_source

from kdbench.engine.execute import ExecutionSettings
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.runner import run_protocol
from kdbench.tracking import COMPLETE, JOB_ID, STATUS, Tracker

STRATEGIES = [
    {"name": "synthesis"},
    {"name": "synthesis", "label": "synthesis_ft", "hparams": {"fine_tune": True}},
    {"name": "genkd", "label": "genkd_bridged"},
    {"name": "genkd", "label": "genkd_mixed", "hparams": {"teacher_input": "mixed"}},
    {"name": "genkd", "label": "genkd_mc", "hparams": {"mc_samples": 2}},
    {"name": "genkd", "label": "genkd_aug", "hparams": {"unlabelled_cases": 1}},
    {"name": "genkd", "label": "genkd_ft", "teacher": "synthesis",
     "teacher_hparams": {"fine_tune": True}, "hparams": {"teacher_input": "real"}},
]


@pytest.fixture(scope="module")
def generative_grid(tmp_path_factory, registry, prepared_phantom):
    """Six strategies on one scenario, N=6, one seed, two epochs of two iterations, on the
    session's prepared phantom."""
    from kdbench.data.protocol_data import ensure_data

    root = tmp_path_factory.mktemp("generative")
    data_dir = prepared_phantom.path.parent
    path = phantom_protocol(
        root, "generative_test", dataset=prepared_source(prepared_phantom), strategies=STRATEGIES,
        backbone={"name": "nnunet", "options": {"patch_size": [16, 16, 16], "batch_size": 2,
                                                "mirroring": False}},
        statistics={"baseline": "synthesis"})
    protocol = load_protocol(path, registry)
    ensure_data(protocol, registry, data_dir)
    plan = build_plan(protocol, registry)
    settings = ExecutionSettings(path, data_dir, root / "runs", f"sqlite:///{root / 'mlflow.db'}")
    report = run_protocol(settings, registry)
    tracker = Tracker(plan, settings.tracking_uri)
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.`{STATUS}` = '{COMPLETE}'")
    return {"plan": plan, "report": report, "runs": {r.data.tags[JOB_ID]: r for r in runs},
            "root": root, "uri": settings.tracking_uri}


def test_one_teacher_and_one_generator_serve_every_strategy(generative_grid):
    plan = generative_grid["plan"]
    by_component = {}
    for job in plan.jobs:
        by_component.setdefault(job.component, []).append(job)
    assert len(by_component["multi"]) == 1 and len(by_component["unet_generator"]) == 1
    teacher, generator = by_component["multi"][0], by_component["unet_generator"][0]
    assert generator.depends_on == {"teacher": teacher.id}
    students = [j for j in plan.jobs if j.component in ("synthesis", "genkd")]
    assert len(students) == len(STRATEGIES)
    bridged = next(j for j in students if j.component == "synthesis" and j.hparams["fine_tune"])
    assert "teacher of genkd_ft @ t1ce_only" in map(str, bridged.roles)  # one Job, both roles
    for job in students:
        expected = bridged.id if "strategy genkd_ft @ t1ce_only" in map(str, job.roles) \
            else teacher.id
        assert job.depends_on == {"teacher": expected, "generator": generator.id}
    assert [len(w) for w in plan.waves()] == [1, 1, len(STRATEGIES) - 1, 1]
    assert generator.modalities.evaluate == (("t1ce",),)
    assert set(generative_grid["runs"]) == {j.id for j in plan.jobs}  # all complete, once


def test_generator_record_has_synthesis_scores_and_delta_dice(generative_grid):
    plan, runs = generative_grid["plan"], generative_grid["runs"]
    generator = next(j for j in plan.jobs if j.component == "unet_generator")
    teacher = next(j for j in plan.jobs if j.component == "multi")
    metrics = runs[generator.id].data.metrics
    for modality in ("t1", "t2", "flair"):
        assert 0 <= metrics[f"test_mae_{modality}"] <= 1
        assert metrics[f"test_psnr_{modality}"] > 0
        assert -1 <= metrics[f"test_ssim_{modality}"] <= 1
    for region in ("WT", "TC", "ET"):
        # ΔDice = Dice on completed input - the teacher's own Dice on real input
        expected = (metrics[f"test_dice_{region}"]
                    - runs[teacher.id].data.metrics[f"test_dice_{region}"])
        assert metrics[f"test_delta_dice_{region}"] == pytest.approx(expected, abs=1e-9)
    assert runs[generator.id].data.tags["kdbench.teacher_job_id"] == teacher.id
    table = pd.read_csv(generative_grid["root"] / "runs" / plan.protocol.name / generator.id
                        / "per_case.csv")
    assert set(table["metric"]) == {"dice", "mae", "psnr", "ssim", "delta_dice"}
    assert len(table[table["metric"] == "ssim"]) == 2 * 3  # 2 test cases x 3 modalities


def test_frozen_synthesis_equals_the_generator_scoring(generative_grid):
    """Frozen synthesis-then-segment is exactly the generator's scoring composite: the same
    Dice; fine-tuning trains (its curves exist) and changes it."""
    plan, runs = generative_grid["plan"], generative_grid["runs"]
    generator = next(j for j in plan.jobs if j.component == "unet_generator")
    frozen = next(j for j in plan.jobs if j.component == "synthesis" and
                  not j.hparams["fine_tune"])
    tuned = next(j for j in plan.jobs if j.component == "synthesis" and j.hparams["fine_tune"])
    for region in ("WT", "TC", "ET"):
        assert runs[frozen.id].data.metrics[f"test_dice_{region}"] == pytest.approx(
            runs[generator.id].data.metrics[f"test_dice_{region}"], abs=1e-9)
    assert "train_loss" not in runs[frozen.id].data.metrics
    assert "train_loss" in runs[tuned.id].data.metrics
    tracker = Tracker(plan, generative_grid["uri"])
    first_lr = tracker.client.get_metric_history(runs[tuned.id].info.run_id, "learning_rate")[0]
    assert first_lr.step == 0 and first_lr.value == pytest.approx(1e-3)  # fine_tune_lr


def test_every_genkd_variant_logs_its_terms(generative_grid):
    plan, runs = generative_grid["plan"], generative_grid["runs"]
    logged = {j.spec["hparams"].get("teacher_input", "") + "/" + str(j.hparams["mc_samples"])
              + "/" + str(j.hparams["unlabelled_cases"]): set(runs[j.id].data.metrics)
              for j in plan.jobs if j.component == "genkd"}
    assert "train_distill_bridged" in logged["bridged/1/0"]
    assert "train_distill_real" not in logged["bridged/1/0"]
    assert {"train_distill_real", "train_distill_bridged"} <= logged["mixed/1/0"]
    assert "train_agreement" in logged["bridged/2/0"]
    assert "train_distill_unlabelled" in logged["bridged/1/1"]
    for metrics in logged.values():
        assert {"test_dice_WT", "test_dice_TC", "test_dice_ET"} <= metrics


def test_unlabelled_cases_lie_outside_every_subset_and_the_test_set(generative_grid):
    plan = generative_grid["plan"]
    job = next(j for j in plan.jobs if j.component == "genkd"
               and j.hparams["unlabelled_cases"] == 1)
    done = yaml.safe_load((generative_grid["root"] / "runs" / plan.protocol.name / job.id
                           / "done.json").read_text())
    assert len(done["unlabelled_cases"]) == 1
    unlabelled = done["unlabelled_cases"][0]
    assert unlabelled not in done["test_cases"] and unlabelled not in done["train_cases"]

"""A Job end to end: a teacher Job, then a distillation Job that loads it by id."""

from __future__ import annotations

import json

import pytest

from kdbench.data.protocol_data import ProtocolData
from kdbench.data.split_files import save_splits
from kdbench.data.splits import make_splits
from kdbench.engine.job import finished, train_and_predict
from kdbench.errors import KdbenchError
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol


@pytest.fixture
def tiny_plan(registry, demo_data, write_protocol):
    demo_data["dataset"]["options"] = {"cases": 10, "shape": [32, 32, 32], "seed": 0}
    demo_data["split"] = {"test_size": 2, "validation_fraction": 0.25}
    demo_data["training_sizes"] = [6]
    demo_data["seeds"] = [0]
    demo_data["scenarios"] = [{"name": "t1ce_only", "available": ["t1ce"]}]
    demo_data["strategies"] = [{"name": "kd", "hparams": {"temperature": 4.0}}]
    demo_data["backbone"] = {"name": "nnunet"}
    demo_data["training"] = {"epochs": 1, "iterations_per_epoch": 2, "val_iterations": 1}
    demo_data["statistics"] = {}
    return build_plan(load_protocol(write_protocol(demo_data), registry), registry)


def test_teacher_then_student(tiny_plan, prepared_phantom, registry, tmp_path):
    splits = make_splits(list(prepared_phantom.cases), seeds=[0], test_size=2,
                         validation_fraction=0.25)
    data = ProtocolData(prepared_phantom, splits, save_splits(splits, tmp_path / "split.json"))
    teacher, student = tiny_plan.jobs
    assert (teacher.component, student.component) == ("multi", "kd")
    runs = tmp_path / "runs"
    with pytest.raises(KdbenchError, match=f"teacher Job {teacher.id} .* has not finished"):
        train_and_predict(student, tiny_plan, registry, data, runs)

    done = train_and_predict(teacher, tiny_plan, registry, data, runs)
    assert done.checkpoint.exists() and finished(runs, tiny_plan, teacher) is not None
    reports = []
    result = train_and_predict(student, tiny_plan, registry, data, runs, callbacks=[reports.append])
    assert result.record["teacher"] == teacher.id
    assert result.record["splits"]["seed_hash"] == splits.seed_hash(0)
    assert set(reports[-1].train_terms) == {"loss", "supervised", "distillation"}
    assert reports[-1].train_terms["distillation"] > 0
    predictions = sorted(p.name for p in result.predictions(("t1ce",)).iterdir())
    assert predictions == sorted(f"{c}.nii.gz" for c in splits.test)
    assert set(result.record["test_cases"]).isdisjoint(splits.subset(6, 0).cases)
    record = json.loads((result.path / "done.json").read_text())
    assert record == result.record
    # finished Jobs are not run again
    assert train_and_predict(student, tiny_plan, registry, data, runs).record == record

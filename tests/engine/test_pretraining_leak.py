"""No leakage from pretrained teachers: the case ids a foundation checkpoint declares it was
trained on, mapped to the dataset's ids through the release's mapping tables, must miss the
test set; a checkpoint that declares nothing runs only when the protocol allows it, and the
report flags the strategies that use it.

Real releases (tests/release_factory.py), real prepared datasets (a listing backbone, so no
nnU-Net run), real checkpoint side files and bundle metadata; nothing is mocked."""

from __future__ import annotations

import csv
import json

import pytest
from release_factory import case_ids, make_release

from kdbench import Backbone
from kdbench.data.prepared import PreparedDataset
from kdbench.data.protocol_data import ensure_data
from kdbench.engine.job import strategy_of, train_model
from kdbench.engine.preflight import check_pretraining, dataset_cases, pretraining_record
from kdbench.errors import KdbenchError
from kdbench.plan import build_plan
from kdbench.plugin_manager import load_plugins
from kdbench.protocol import load_protocol

#: A tiny SegResNet (the network is never built: the check comes before training).
TINY = {"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]}


class ListingBackbone(Backbone):
    """Prepares nothing but a list, so that these tests need no nnU-Net run."""

    name = "listing"

    def prepare(self, cases, label_map, dest, options, *, name, num_processes=1):
        (dest / "cases.txt").write_text("\n".join(c.case_id for c in cases))
        return {"cases": len(cases)}


def old_id(case: str) -> str:
    """The BraTS 2018 id the mapping table gives a 2021 case of the factory."""
    return f"Brats18_CBICA_A{case[-2:]}_1"


def mapping_table(root, ids) -> None:
    """A BraTS 2021-style ``BraTS21-17_Mapping.csv``: 2021 -> 2020/2019/2018/2017 ids."""
    with (root / "BraTS21-17_Mapping.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["BraTS2021", "BraTS2020", "BraTS2019", "BraTS2018", "BraTS2017"])
        for i, cid in enumerate(ids):
            writer.writerow([cid, f"BraTS20_Training_{i + 1:03d}", "NA", old_id(cid), ""])


@pytest.fixture
def setup(tmp_path, demo_data, write_protocol):
    """(registry, protocol writer taking teacher_hparams and a source, weights file)."""
    registry = load_plugins(use_env=False)
    registry.backbones.add(ListingBackbone)
    weights = tmp_path / "weights" / "segresnet.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")  # never read: refused before anything is built

    def protocol(source: str = "brats", **teacher_hparams):
        data = dict(demo_data)
        if source == "brats":
            release = tmp_path / "release"
            if not release.exists():
                make_release(release, "2021", n_cases=8)
                mapping_table(release, case_ids("2021", 8))
            data["dataset"] = {"source": "brats", "path": str(release)}
        else:
            data["dataset"]["options"] = {"cases": 10, "shape": [24, 24, 24], "seed": 1}
        data["split"] = {"test_size": 3, "seed": 0, "validation_fraction": 0.25}
        data["training_sizes"], data["seeds"] = [2], [0]
        data["backbone"] = {"name": "listing"}
        data["strategies"] = [{"name": "mono"}, {"name": "kd", "teacher": "foundation",
                                                 "teacher_hparams": {
                                                     "checkpoint": str(weights),
                                                     "network_kwargs": json.dumps(TINY),
                                                     **teacher_hparams}}]
        loaded = load_protocol(write_protocol(data), registry)
        return loaded, ensure_data(loaded, registry, tmp_path / "data"), build_plan(loaded,
                                                                                    registry)

    return registry, protocol, weights


def jobs(plan, registry):
    return [(j, strategy_of(j, registry)) for j in plan.jobs]


def foundation_job(plan):
    return next(j for j in plan.jobs if j.component == "foundation")


def test_the_release_mapping_is_kept_with_the_prepared_data(setup):
    registry, protocol, _ = setup
    _, data, _ = protocol()
    ids = case_ids("2021", 8)
    aliases = data.dataset.aliases
    assert aliases[old_id(ids[3])] == (ids[3],)
    assert aliases["BraTS20_Training_004"] == (ids[3],)
    assert "NA" not in aliases and "" not in aliases
    reopened = PreparedDataset.open(data.dataset.path)  # read back from aliases.json
    assert reopened.aliases == aliases
    assert dataset_cases([old_id(ids[0]), ids[1], "Brats17_unknown"], reopened) == {
        old_id(ids[0]): (ids[0],), ids[1]: (ids[1],)}


def test_an_old_id_of_a_test_case_is_refused_naming_both_ids(setup):
    registry, protocol, weights = setup
    _, data, _ = protocol()
    test = sorted(data.splits.test)
    side = weights.with_name(weights.name + ".training_cases.txt")
    side.write_text("# BraTS 2018 training cases\n" + "\n".join(old_id(c) for c in test)
                    + "\nBrats17_not_in_this_release\n")
    _, data, plan = protocol()
    with pytest.raises(KdbenchError) as error:
        check_pretraining(jobs(plan, registry), data)
    message = str(error.value)
    for case in test:
        assert f"{old_id(case)} = {case}" in message
    assert f"trained on {len(test)} case(s) of the test set" in message
    assert str(weights) in message and "Use a checkpoint not trained on these cases" in message
    assert foundation_job(plan).id in message


def test_a_test_case_id_itself_is_refused_on_a_phantom(setup):
    registry, protocol, weights = setup
    _, data, _ = protocol("phantom")
    assert data.dataset.aliases == {}  # no mapping table: ids are compared as they are
    listed = weights.parent / "cases.csv"
    chosen = sorted(data.splits.test)[0]
    listed.write_text(f"case_id,source\n{chosen},phantom\n")
    _, data, plan = protocol("phantom", training_cases_file=str(listed))
    with pytest.raises(KdbenchError, match=f"test set .*: {chosen}\\. Its scores"):
        check_pretraining(jobs(plan, registry), data)
    # the Job itself refuses too (kdbench job run, tuning trials), before it trains
    with pytest.raises(KdbenchError, match=chosen):
        train_model(foundation_job(plan), plan, registry, data, weights.parent / "runs",
                    weights.parent / "runs" / "job")


def test_a_bundle_declaring_test_cases_in_its_metadata_is_refused(setup):
    registry, protocol, weights = setup
    _, data, _ = protocol()
    bundle = weights.parent / "bundle"
    (bundle / "configs").mkdir(parents=True)
    chosen = sorted(data.splits.test)[-1]
    (bundle / "configs" / "metadata.json").write_text(json.dumps(
        {"version": "0.5.0", "training_cases": [old_id(chosen)]}))
    _, data, plan = protocol(checkpoint=str(bundle), architecture="bundle")
    with pytest.raises(KdbenchError, match=f"{old_id(chosen)} = {chosen}"):
        check_pretraining(jobs(plan, registry), data)


def test_disjoint_declared_cases_pass_and_are_recorded(setup):
    registry, protocol, weights = setup
    _, data, _ = protocol()
    outside = [c for c in data.dataset.cases if c not in set(data.splits.test)]
    side = weights.with_name(weights.name + ".training_cases.txt")
    side.write_text("\n".join([old_id(outside[0]), outside[1], "Brats17_elsewhere_1"]))
    _, data, plan = protocol()
    check_pretraining(jobs(plan, registry), data)
    teacher = strategy_of(foundation_job(plan), registry)
    assert pretraining_record(teacher, data.dataset) == {
        "declared": True, "declared_cases": 3, "in_dataset": 2}
    mono = next(j for j in plan.jobs if j.component == "mono")  # trained from scratch
    assert pretraining_record(strategy_of(mono, registry), data.dataset) == {
        "declared": True, "declared_cases": 0, "in_dataset": 0}


def test_undeclared_training_data_runs_only_when_allowed(setup):
    registry, protocol, weights = setup
    _, data, plan = protocol()
    with pytest.raises(KdbenchError) as error:
        check_pretraining(jobs(plan, registry), data)
    message = str(error.value)
    assert "declares no training cases" in message
    assert str(weights) + ".training_cases.txt" in message
    assert "allow_undeclared_training_data: true" in message
    _, data, plan = protocol(allow_undeclared_training_data=True)
    check_pretraining(jobs(plan, registry), data)
    teacher = strategy_of(foundation_job(plan), registry)
    assert pretraining_record(teacher, data.dataset)["declared"] is False


def test_kdbench_run_stops_before_any_job(setup, tmp_path):
    from kdbench.engine.execute import ExecutionSettings
    from kdbench.runner import run_protocol

    registry, protocol, weights = setup
    loaded, data, _ = protocol()
    (weights.with_name(weights.name + ".training_cases.txt")
     .write_text(old_id(sorted(data.splits.test)[0])))
    path = next(tmp_path.glob("protocol_*.yaml"))
    runs = tmp_path / "runs"
    settings = ExecutionSettings(path, tmp_path / "data", runs,
                                 tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(KdbenchError, match="test set"):
        run_protocol(settings, registry)
    assert not (runs / loaded.name).exists() or not any(
        (p / "done.json").exists() for p in (runs / loaded.name).iterdir())


def test_the_report_flags_strategies_with_undeclared_teachers(setup, tmp_path):
    import pandas as pd

    from kdbench.report.provenance import footnoted, undeclared_training_data
    from kdbench.report.tables import Table

    registry, protocol, _ = setup
    loaded, _, plan = protocol()
    assert undeclared_training_data(loaded, registry) == {}
    loaded, _, plan = protocol(allow_undeclared_training_data=True)
    notes = undeclared_training_data(loaded, registry)
    assert list(notes) == ["kd"]
    assert "its teacher foundation" in notes["kd"] and "undeclared" in notes["kd"]
    cells = pd.DataFrame({"N=2": ["0.8", "0.7"]}, index=["mono", "kd"])
    table = Table("t", "dice", cells, cells == "", cells.map(lambda _: ""))
    (marked,) = footnoted([table], notes)
    assert list(marked.cells.index) == ["mono", "kd ‡"]
    assert marked.caption.endswith(notes["kd"]) and "kd ‡" in marked.markdown()
    # a finished teacher Job whose done.json says its cases were declared is not flagged
    runs = tmp_path / "runs"
    for job in plan.jobs:
        if job.component == "foundation":
            folder = runs / loaded.name / job.id
            folder.mkdir(parents=True)
            (folder / "done.json").write_text(json.dumps(
                {"pretraining": {"declared": True, "declared_cases": 0, "in_dataset": 0}}))
    assert undeclared_training_data(loaded, registry, runs) == {}


def test_a_mapping_table_added_later_updates_the_aliases_without_preparing_again(setup, tmp_path):
    registry, protocol, _ = setup
    _, data, _ = protocol()
    marker = data.dataset.marker
    ids = case_ids("2021", 8)
    (tmp_path / "release" / "BraTS21-17_Mapping.csv").unlink()
    _, data, _ = protocol()
    assert data.dataset.aliases == {} and not (data.dataset.path / "aliases.json").exists()
    (tmp_path / "release" / "more.csv").write_text(f"BraTS2021,BraTS2018\n{ids[5]},Brats18_x_1\n")
    _, data, _ = protocol()
    assert data.dataset.aliases == {"Brats18_x_1": (ids[5],)}
    assert data.dataset.marker == marker  # the same preparation
    (data.dataset.path / "aliases.json").write_text('{"aliases": ["Brats18_x_1"]}')
    with pytest.raises(KdbenchError, match=r"aliases\.json is malformed .* --force"):
        _ = PreparedDataset.open(data.dataset.path).aliases

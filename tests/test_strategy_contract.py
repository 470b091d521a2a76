"""The strategy contract: every registered strategy through a tiny phantom Job on CPU, and the
tutorial docs/writing_a_strategy.md, whose code is the third-party strategy tested here.

Which strategies: every strategy of the built-in plugins (``load_plugins(use_env=False)``,
listed at collection time, so a newly registered one is covered without editing this file),
the strategy of the tutorial, loaded from a plugins folder, and the strategies of the plugin
folders in ``KDBENCH_PLUGINS_DIR`` (how a third party runs the contract on its own plugins:
``KDBENCH_PLUGINS_DIR=$PWD/my_plugins pytest tests/test_strategy_contract.py``).

How: one protocol lists them all (T1ce-only inference, N = 4, one seed, one epoch of one
iteration, a 32³ patch of a 3-stage network 4-8-16 wide, no mirroring) on the session's
prepared phantom, so the default teacher and generator Jobs are trained once for every student;
a module fixture runs it strategy by strategy, as ``kdbench run --only NAME`` does (the inline
executor; Jobs already complete are skipped), so that a broken strategy fails its own test, not
the others'. Each strategy's test then checks its Jobs' records.

The tutorial's code blocks: a fenced block whose info string carries ``title="PATH"``
(```` ```python title="my_plugins/confident_kd.py" ````) is the text of the file PATH, relative
to the reader's working folder; blocks with the same title are joined, in document order, with
one blank line between them (each block's text ends with its last line's newline). Blocks
without a title (shell commands, layouts, formulas) are not extracted.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, phantom_protocol, prepared_source, run_cli

from kdbench.plugin_manager import load_plugins, plugin_dirs_from_env

TUTORIAL = ROOT / "docs" / "writing_a_strategy.md"
PLUGINS_FOLDER = "my_plugins"  # the tutorial's plugin folder, relative to its working folder
SCENARIO = "t1ce_only"
REGIONS = ("WT", "TC", "ET")
FENCE = re.compile(r'^```[\w+-]* title="(?P<title>[^"]+)"[^\n]*\n(?P<code>.*?)^```[ \t]*$',
                   re.M | re.S)


def tutorial_files(text: str) -> dict[str, str]:
    """The files of the tutorial: title -> text (see the module docstring)."""
    blocks: dict[str, list[str]] = {}
    for match in FENCE.finditer(text):
        title = match["title"]
        assert not Path(title).is_absolute() and ".." not in Path(title).parts, title
        blocks.setdefault(title, []).append(match["code"])
    return {title: "\n".join(parts) for title, parts in blocks.items()}


def write_tutorial(folder: Path) -> Path:
    """Write the tutorial's files under ``folder``; return its plugins folder."""
    for title, code in tutorial_files(TUTORIAL.read_text()).items():
        path = folder / title
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
    return folder / PLUGINS_FOLDER


def _folder_strategies(dirs: list[Path]) -> tuple[list[str], set[str]]:
    """The strategies registered by the plugin files of ``dirs``, and those files' stems."""
    registry = load_plugins(dirs, use_env=False)
    infos = [i for i in registry.plugins if i.source.startswith("file ")]
    return (sorted(n for i in infos for n in i.registered.get("strategies", [])),
            {i.name for i in infos})


def _collect() -> dict[str, Any]:
    """Collection time: what the contract covers. A folder that fails to load is reported by
    its own test (below) instead of breaking the collection of the whole suite."""
    found: dict[str, Any] = {"builtin": sorted(load_plugins(use_env=False).strategies.names()),
                             "tutorial": [], "tutorial_error": None,
                             "env_dirs": plugin_dirs_from_env(), "env": [], "env_error": None}
    with tempfile.TemporaryDirectory() as folder:
        try:
            tutorial, tutorial_files_ = _folder_strategies([write_tutorial(Path(folder))])
            found["tutorial"] = tutorial
        except Exception:  # noqa: BLE001 - reported by test_the_tutorial_plugin_loads
            found["tutorial_error"] = traceback.format_exc()
            tutorial_files_ = set()
    env_files: set[str] = set()
    if found["env_dirs"]:
        try:
            found["env"], env_files = _folder_strategies(found["env_dirs"])
        except Exception:  # noqa: BLE001 - reported by test_the_plugins_dirs_load
            found["env_error"] = traceback.format_exc()
            found["env_dirs"] = []
    # a copy of the tutorial in KDBENCH_PLUGINS_DIR is the one tested (same names otherwise clash)
    found["with_tutorial"] = not (set(found["tutorial"]) & set(found["env"])
                                  or tutorial_files_ & env_files)
    return found


COLLECTED = _collect()
CONTRACT = list(dict.fromkeys(
    COLLECTED["builtin"] + (COLLECTED["tutorial"] if COLLECTED["with_tutorial"] else [])
    + COLLECTED["env"]))
PARAMS = [pytest.param(name, id=name if name in COLLECTED["builtin"] else f"plugins_dir-{name}")
          for name in CONTRACT]


# -- the grid: every strategy, one protocol, run once ----------------------------------------

@dataclass
class Grid:
    plan: Any
    registry: Any
    data: Any
    settings: Any
    client: Any
    runs: dict[str, list[Any]]  # Job id -> its complete MLflow runs
    failures: dict[str, str]  # strategy -> why `run --only` it did not run through it


@pytest.fixture(scope="module")
def tutorial_folder(tmp_path_factory) -> Path:
    """The tutorial's files written out; its plugins folder."""
    return write_tutorial(tmp_path_factory.mktemp("tutorial"))


@pytest.fixture(scope="module")
def grid(tmp_path_factory, prepared_phantom, tutorial_folder) -> Grid:
    from kdbench.data.protocol_data import ensure_data
    from kdbench.engine.execute import ExecutionSettings
    from kdbench.plan import build_plan
    from kdbench.protocol import load_protocol
    from kdbench.runner import run_protocol
    from kdbench.tracking import JOB_ID, Tracker

    assert CONTRACT, "no strategy to run the contract on"
    root = tmp_path_factory.mktemp("contract")
    dirs = ([tutorial_folder] if COLLECTED["with_tutorial"] else []) + COLLECTED["env_dirs"]
    registry = load_plugins(dirs, use_env=False)
    path = phantom_protocol(
        root, "strategy_contract", dataset=prepared_source(prepared_phantom),
        strategies=[{"name": name} for name in CONTRACT],
        scenarios=[{"name": SCENARIO, "available": ["t1ce"]}], training_sizes=[4],
        backbone={"name": "nnunet", "options": {
            "patch_size": [32, 32, 32], "batch_size": 1, "features_per_stage": [4, 8, 16],
            "mirroring": False}},
        training={"epochs": 1, "iterations_per_epoch": 1, "val_iterations": 1},
        statistics={})
    data_dir = prepared_phantom.path.parent
    protocol = load_protocol(path, registry)
    data = ensure_data(protocol, registry, data_dir)
    plan = build_plan(protocol, registry)
    settings = ExecutionSettings(path, data_dir, root / "runs", f"sqlite:///{root / 'mlflow.db'}",
                           plugins_dirs=dirs)
    failures: dict[str, str] = {}
    for name in CONTRACT:  # `kdbench run --only NAME`: its Jobs and what they need, once
        try:
            run_protocol(settings, registry, only=[name])
        except Exception:  # noqa: BLE001 - each strategy's test reports its own
            failures[name] = traceback.format_exc()
    tracker = Tracker(plan, settings.tracking_uri)
    runs: dict[str, list[Any]] = {}
    for run in tracker.complete_runs():
        runs.setdefault(run.data.tags[JOB_ID], []).append(run)
    return Grid(plan, registry, data, settings, tracker.client, runs, failures)


def _closure(grid: Grid, job: Any) -> list[Any]:
    """The Job and every Job it depends on, dependencies first."""
    out = []
    for dep in job.depends_on.values():
        out += _closure(grid, grid.plan.job(dep))
    return [*out, job]


def _job_folder(grid: Grid, job: Any) -> Path:
    return Path(grid.settings.runs_dir) / grid.plan.protocol.name / job.id


def test_there_are_strategies_to_test():
    """The built-in plugins register strategies, and the tutorial one strategy."""
    assert COLLECTED["builtin"], "load_plugins(use_env=False) registered no strategy"
    assert {"mono", "multi", "kd"} <= set(COLLECTED["builtin"])
    assert COLLECTED["tutorial"] == ["confident_kd"], COLLECTED["tutorial_error"]


def test_the_plugins_dirs_load():
    """The folders of KDBENCH_PLUGINS_DIR (if any) load (their strategies are then in the
    contract's parameters)."""
    assert COLLECTED["env_error"] is None, COLLECTED["env_error"]


@pytest.mark.parametrize("name", PARAMS)
def test_strategy_meets_the_contract(grid, name):
    from kdbench.cases import LABEL_MAPS
    from kdbench.metrics.job_scores import summary_metric_key
    from kdbench.modalities import label
    from kdbench.tracking import COMPLETE, STATUS
    from kdbench.types import Budget

    jobs = [j for j in grid.plan.jobs if f"strategy {name} @ {SCENARIO}" in map(str, j.roles)]
    assert jobs, f"{name}: the plan has no Job for it"
    assert name not in grid.failures, f"{name}: its Jobs failed:\n{grid.failures[name]}"
    needed = list({j.id: j for job in jobs for j in _closure(grid, job)}.values())
    cls = grid.registry.strategies.get(name)

    # every Job it needs has exactly one complete MLflow run, tied to its dependencies' runs
    for job in needed:
        assert len(grid.runs.get(job.id, [])) == 1, f"{job.component}: no single complete run"
        run = grid.runs[job.id][0]
        assert run.data.tags[STATUS] == COMPLETE and run.info.status == "FINISHED"
        assert run.data.tags["kdbench.component"] == job.component
        artifacts = {a.path for a in grid.client.list_artifacts(run.info.run_id)}
        assert {"per_case.csv", "done.json", "job.json"} <= artifacts, artifacts
        for role, dep in job.depends_on.items():
            assert run.data.tags[f"kdbench.{role}_job_id"] == dep
            assert run.data.tags[f"kdbench.{role}_run_id"] == grid.runs[dep][0].info.run_id

    test_cases = sorted(grid.data.splits.test)
    convention = grid.data.dataset.marker["label_convention"]
    training = grid.plan.protocol.training
    for job in jobs:
        # its dependencies are the ones it declares, with their defaults
        assert set(job.depends_on) == set(cls.requires)
        for role, dep in job.depends_on.items():
            assert grid.plan.job(dep).component == getattr(cls, f"default_{role}")
        run = grid.runs[job.id][0]
        folder = _job_folder(grid, job)
        record = json.loads((folder / "done.json").read_text())
        assert sorted(record["test_cases"]) == test_cases

        # per-case Dice for every test case, region and scored subset, in [0, 1]; its means are
        # the run's summary metrics
        import pandas as pd

        table = pd.read_csv(folder / "per_case.csv")
        dice = table[table["metric"] == "dice"]
        several = len(job.modalities.evaluate) > 1
        for subset in job.modalities.evaluate:
            rows = dice[dice["subset"] == label(subset)]
            assert sorted(zip(rows["case"], rows["region"], strict=True)) == sorted(
                (c, r) for c in test_cases for r in REGIONS), f"{name} from {label(subset)}"
            assert rows["value"].between(0.0, 1.0).all(), rows
            for region in REGIONS:
                key = summary_metric_key("dice", region, subset if several else None)
                assert run.data.metrics[key] == pytest.approx(
                    rows[rows["region"] == region]["value"].mean(), abs=1e-9)

        # a prediction of every test case from every scored subset, in the reference's geometry
        # and the source's label values
        import nibabel as nib
        import numpy as np

        assert set(record["predictions"]) == {label(s) for s in job.modalities.evaluate}
        for subset in job.modalities.evaluate:
            predictions = folder / record["predictions"][label(subset)]
            assert sorted(p.name for p in predictions.glob("*.nii.gz")) == sorted(
                f"{c}.nii.gz" for c in test_cases)
            for case in test_cases:
                image = nib.load(predictions / f"{case}.nii.gz")
                reference = nib.load(grid.data.dataset.reference(case))
                assert image.shape == reference.shape, case
                assert np.allclose(image.affine, reference.affine), case
                values = set(np.unique(np.asanyarray(image.dataobj)).tolist())
                assert values <= set(LABEL_MAPS[convention]), (case, values)

        # the training terms: "loss" among them, one value per epoch, every one finite; none
        # for a strategy that asks for no training
        budget = cls(job.hparams, job.modalities).training_budget(Budget(
            training.epochs, training.iterations_per_epoch, training.val_iterations,
            training.validate_every, training.checkpoint_every))
        assert record["epochs"] == budget.epochs
        terms = {k: v for k, v in run.data.metrics.items() if k.startswith("train_")}
        if budget.epochs == 0:
            assert not terms, f"{name} trains no epoch but logged {sorted(terms)}"
            continue
        assert "train_loss" in terms, f"{name} logged {sorted(terms)}"
        history = grid.client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in history] == list(range(budget.epochs))
        assert all(math.isfinite(m.value) for m in history), history
        assert all(math.isfinite(v) for v in terms.values()), terms


# -- the tutorial: its files load, are listed, plan, and compute what the text says ---------

def test_the_tutorial_has_the_documented_files():
    files = tutorial_files(TUTORIAL.read_text())
    assert set(files) == {f"{PLUGINS_FOLDER}/confident_kd.py", "my_protocol.yaml"}
    compile(files[f"{PLUGINS_FOLDER}/confident_kd.py"], "confident_kd.py", "exec")
    text = TUTORIAL.read_text()
    assert "](../" not in text and "http" not in text  # links nothing outside the repository


def test_the_tutorial_plugin_loads(tutorial_folder):
    """Through the real plugin manager, from its own folder, with the hyper-parameters (defaults
    and search ranges) that the tutorial's table documents."""
    assert COLLECTED["tutorial_error"] is None, COLLECTED["tutorial_error"]
    registry = load_plugins([tutorial_folder], use_env=False)
    info = next(i for i in registry.plugins if i.name == "confident_kd")
    assert info.source == f"file {tutorial_folder / 'confident_kd.py'}"
    assert info.hooks == ["kdbench_register_strategies"]
    assert info.registered == {"strategies": ["confident_kd"]}
    cls = registry.strategies.get("confident_kd")
    assert cls.requires == ("teacher",) and cls.default_teacher == "multi"
    table = TUTORIAL.read_text().split("| hparam |")[1].split("\n\n")[0]
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\| ([^|]+?) \| ([^|]+?) \|", table, flags=re.M)
    assert {r[0] for r in rows} == set(cls.hparams)
    for name, default, search in rows:
        spec = cls.hparams[name]
        assert cls.resolve_hparams({name: default})[name] == spec.default, name
        low, high = (float(x) for x in search.split(" (")[0].split(" – "))
        assert (low, high, spec.log) == (spec.low, spec.high, "(log)" in search), name


def test_the_cli_lists_the_tutorial_strategy(tutorial_folder):
    """``kdbench --plugins-dir my_plugins plugins``, as the tutorial shows it, lists it."""
    out = run_cli("--plugins-dir", str(tutorial_folder), "plugins", env={"COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "confident_kd (v1)" in out.stdout and "file " in out.stdout
    out = run_cli("--plugins-dir", str(tutorial_folder), "plugins", "--json")
    assert out.returncode == 0, out.stderr
    plugin = next(p for p in json.loads(out.stdout)["plugins"] if p["name"] == "confident_kd")
    assert plugin["registered"] == {"strategies": ["confident_kd"]}


def test_the_tutorial_protocol_plans_one_teacher_for_every_student(tutorial_folder):
    """``kdbench plan my_protocol.yaml``: 5 Jobs, one multi teacher for kd and both
    confident_kd variants, as the tutorial says."""
    from kdbench.plan import build_plan
    from kdbench.protocol import load_protocol

    registry = load_plugins([tutorial_folder], use_env=False)
    plan = build_plan(load_protocol(tutorial_folder.parent / "my_protocol.yaml", registry),
                      registry)
    assert sorted(j.component for j in plan.jobs) == [
        "confident_kd", "confident_kd", "kd", "mono", "multi"]
    teacher = next(j for j in plan.jobs if j.component == "multi")
    students = [j for j in plan.jobs if j.component in ("kd", "confident_kd")]
    assert all(j.depends_on == {"teacher": teacher.id} for j in students)
    assert sorted(j.hparams["gamma"] for j in students if j.component == "confident_kd") == [
        1.0, 2.0]


def test_the_tutorial_loss_is_kd_at_gamma_zero_and_ignores_an_unsure_teacher(tutorial_folder):
    import torch

    from kdbench_plugins.kd import binary_kl

    registry = load_plugins([tutorial_folder], use_env=False)
    loss = sys.modules[registry.strategies.get("confident_kd").__module__].confidence_weighted_kl
    generator = torch.Generator().manual_seed(0)
    student, teacher = (torch.randn(2, 3, 4, 4, 4, generator=generator) * 3 for _ in range(2))
    assert torch.allclose(loss(student, teacher, 4.0, 0.0), binary_kl(student, teacher, 4.0))
    # a teacher at 1/2 everywhere has no confidence: no distillation at all
    assert loss(student, torch.zeros_like(teacher), 4.0, 1.0).item() == 0.0
    # confidence is at most 1: the weighted term never exceeds kd's
    assert loss(student, teacher, 4.0, 2.0) <= binary_kl(student, teacher, 4.0)
    student.requires_grad_(True)
    loss(student, teacher, 10.0, 1.0).backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0

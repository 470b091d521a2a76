"""Plans: job counts, shared teachers, deterministic ids, and what changes an id."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from helpers import DEMO, run_cli

from kdbench.plan import build_plan
from kdbench.plugin_manager import load_plugins
from kdbench.protocol import load_protocol

BUILTINS = {"mono", "multi", "kd", "nnunet_backbone", "phantom", "brats"}


def _plan(registry, path=DEMO):
    return build_plan(load_protocol(path, registry), registry)


def test_demo_plan_shape(registry):
    plan = _plan(registry)
    # per (N, seed): one multi (the upper bound and kd's teacher), one mono, one kd
    assert len(plan.jobs) == 2 * 2 * 3
    for n in (4, 12):
        for seed in (0, 1):
            jobs = [j for j in plan.jobs if (j.n, j.seed) == (n, seed)]
            by = {c: [j for j in jobs if j.component == c] for c in ("mono", "multi", "kd")}
            assert [len(by[c]) for c in ("mono", "multi", "kd")] == [1, 1, 1]
            teacher = by["multi"][0]
            assert teacher.modalities.training == ("t1", "t1ce", "t2", "flair")
            assert sorted(map(str, teacher.roles)) == ["strategy multi @ t1ce_only",
                                             "teacher of kd @ t1ce_only"]
            (kd,) = by["kd"]
            assert kd.depends_on == {"teacher": teacher.id}
            assert kd.modalities.training == teacher.modalities.training
            assert kd.modalities.evaluate == (("t1ce",),)
            assert by["mono"][0].modalities.training == ("t1ce",)
    index = {job.id: i for i, job in enumerate(plan.jobs)}
    for job in plan.jobs:  # dependencies first
        assert all(index[d] < index[job.id] for d in job.depends_on.values())
    waves = plan.waves()
    assert len(waves) == 2 and {j.component for j in waves[1]} == {"kd"}


def test_same_protocol_same_ids_byte_for_byte(registry, tmp_path):
    first = json.dumps(_plan(registry).to_json(), sort_keys=True)
    second = json.dumps(_plan(load_plugins(use_env=False)).to_json(), sort_keys=True)
    assert first == second
    # and in fresh processes, which would expose any dependence on hash randomisation
    out = [run_cli("plan", str(DEMO), "--json", env={"PYTHONHASHSEED": s}) for s in "12"]
    assert out[0].returncode == 0, out[0].stderr
    assert out[0].stdout == out[1].stdout
    assert json.loads(out[0].stdout)["jobs"] == json.loads(first)["jobs"]


def _with_version(tmp_path: Path, module: str, cls: str, version: str):
    folder = tmp_path / f"v_{module}"
    folder.mkdir()
    (folder / f"{module}_v{version}.py").write_text(textwrap.dedent(f"""
        from kdbench import hookimpl
        from kdbench_plugins.{module} import {cls}

        class Bumped({cls}):
            '''The same strategy, a new version.'''
            version = "{version}"

        @hookimpl
        def kdbench_register_strategies(registry):
            registry.add(Bumped)

        @hookimpl
        def kdbench_register_teachers(registry):
            if issubclass(Bumped, __import__("kdbench").Teacher):
                registry.add(Bumped)
    """))
    allow = (BUILTINS - {module}) | {f"{module}_v{version}"}
    return load_plugins([folder], allow=allow, use_env=False)


def _ids(plan) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for job in plan.jobs:
        out.setdefault(job.component, set()).add(job.id)
    return out


def test_bumping_a_version_changes_only_its_jobs(registry, tmp_path):
    base = _ids(_plan(registry))
    # "bumped": a version none of the built-in strategies has ever had
    mono2 = _ids(_plan(_with_version(tmp_path, "mono", "Mono", "bumped")))
    assert mono2["mono"].isdisjoint(base["mono"])
    assert mono2["multi"] == base["multi"] and mono2["kd"] == base["kd"]
    kd2 = _ids(_plan(_with_version(tmp_path, "kd", "KnowledgeDistillation", "bumped")))
    assert kd2["kd"].isdisjoint(base["kd"])
    assert kd2["mono"] == base["mono"] and kd2["multi"] == base["multi"]
    # a teacher's version also changes its students' ids (they depend on its result)
    multi2 = _ids(_plan(_with_version(tmp_path, "multi", "Multi", "bumped")))
    assert multi2["multi"].isdisjoint(base["multi"]) and multi2["kd"].isdisjoint(base["kd"])
    assert multi2["mono"] == base["mono"]


def test_hyperparameters_change_only_that_strategy(registry, demo_data, write_protocol):
    base = _ids(_plan(registry, write_protocol(demo_data)))
    demo_data["strategies"][2]["hparams"] = {"temperature": 4.0}
    changed = _ids(_plan(registry, write_protocol(demo_data)))
    assert changed["kd"].isdisjoint(base["kd"])
    assert changed["mono"] == base["mono"] and changed["multi"] == base["multi"]
    # the default written out explicitly is the same result, so the same id
    demo_data["strategies"][2]["hparams"] = {"temperature": 10}
    assert _ids(_plan(registry, write_protocol(demo_data))) == base


def test_all_fifteen_scenario(registry, demo_data, write_protocol):
    demo_data["scenarios"] = [{"name": "any", "available": "all"}]
    demo_data["statistics"]["primary"].update(scenario="any", subset="t1ce")
    demo_data["training_sizes"] = [8]
    demo_data["seeds"] = [0]
    plan = _plan(registry, write_protocol(demo_data))
    counts = {c: len(ids) for c, ids in _ids(plan).items()}
    assert counts == {"mono": 15, "multi": 1, "kd": 15}
    kd_subsets = sorted(j.modalities.evaluate for j in plan.jobs if j.component == "kd")
    assert len(set(kd_subsets)) == 15


def test_tuned_hparams_are_keyed_by_the_budget(registry, demo_data, write_protocol):
    demo_data["strategies"][2]["hparams"] = "tuned"
    demo_data["tuning"] = {"trials": 8, "n": 12}
    plan = _plan(registry, write_protocol(demo_data))
    kd = [j for j in plan.jobs if j.component == "kd"]
    assert {j.hparams["tuned"]["trials"] for j in kd} == {8}
    assert {j.hparams["tuned"]["n"] for j in kd} == {12}


def test_two_distillation_strategies_share_one_teacher_job(registry, demo_data,
                                                           write_protocol, tmp_path):
    """A future ``genkd`` (any strategy requiring the default teacher) and ``kd`` at the same
    (N, seed) depend on the same teacher Job, which the plan holds once."""
    folder = tmp_path / "future"
    folder.mkdir()
    (folder / "genkd_like.py").write_text(textwrap.dedent("""
        from kdbench import hookimpl
        from kdbench_plugins.kd import KnowledgeDistillation

        class GenKDLike(KnowledgeDistillation):
            '''Another distillation strategy with the same default teacher.'''
            name = "genkd_like"

        @hookimpl
        def kdbench_register_strategies(registry):
            registry.add(GenKDLike)
    """))
    plugins = load_plugins([folder], allow=BUILTINS | {"genkd_like"}, use_env=False)
    demo_data["strategies"] = [{"name": "mono"}, {"name": "kd"}, {"name": "genkd_like"}]
    plan = build_plan(load_protocol(write_protocol(demo_data), plugins), plugins)
    teachers = [j for j in plan.jobs if j.component == "multi"]
    cells = {(j.n, j.seed) for j in plan.jobs}
    assert len(teachers) == len(cells)  # one teacher Job per (N, seed), not one per student
    for job in plan.jobs:
        if job.component in ("kd", "genkd_like"):
            (teacher,) = [t for t in teachers if (t.n, t.seed) == (job.n, job.seed)]
            assert job.depends_on == {"teacher": teacher.id}
    students = {j.component for j in plan.jobs if j.depends_on}
    assert students == {"kd", "genkd_like"}


@pytest.mark.parametrize("text", [
    "strategy kd @ t1ce_only",
    "teacher of kd @ t1ce_only",
    "generator of genkd_ft @ flair",
    "teacher of generator of genkd @ t1ce_only",
    "teacher of generator of teacher of kd @ all",
])
def test_a_role_reads_back_from_its_recorded_form(text):
    from kdbench.types import Role

    role = Role.parse(text)
    assert str(role) == text
    assert role.is_strategy == text.startswith("strategy ")
    assert role.label in text and role.scenario == text.rsplit(" @ ", 1)[1]


def test_roles_nest_through_their_dependencies():
    from kdbench.types import Role

    strategy = Role("strategy", "genkd", "t1ce_only")
    scorer = strategy.of("generator").of("teacher")
    assert str(scorer) == "teacher of generator of genkd @ t1ce_only"
    assert (scorer.label, scorer.via) == ("genkd", ("generator",))
    for bad in ("strategy of kd @ s", "kd", "mentor of kd @ s"):
        with pytest.raises(ValueError):
            Role.parse(bad)


def _teacher_design_plan(registry, tmp_path, teacher, sizes=(4, 12), seeds=(0, 1)):
    import yaml

    data = yaml.safe_load(DEMO.read_text())
    data.update(training_sizes=list(sizes), seeds=list(seeds), statistics={"baseline": "mono"})
    data["strategies"] = [{"name": "mono"}, {"name": "kd", "teacher": teacher}]
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return build_plan(load_protocol(path, registry), registry)


def _teachers(plan):
    kd = [j for j in plan.jobs if j.component == "kd"]
    return {(j.n, j.seed): plan.job(j.depends_on["teacher"]) for j in kd}


def test_teacher_design_same_n_one_teacher_per_n_and_seed(registry, tmp_path):
    teachers = _teachers(_teacher_design_plan(registry, tmp_path, {"n": "same"}))
    assert len({t.id for t in teachers.values()}) == 4  # one per (N, seed)
    for (n, seed), t in teachers.items():
        assert (t.component, t.n, t.seed) == ("multi", n, seed)
        assert t.modalities.training == ("t1", "t1ce", "t2", "flair")
    # `teacher: multi` and `teacher: {n: same}` are the default design: the same Jobs
    default = _teachers(_teacher_design_plan(registry, tmp_path, None))
    short = _teachers(_teacher_design_plan(registry, tmp_path, "multi"))
    assert {k: t.id for k, t in default.items()} == {k: t.id for k, t in short.items()} \
        == {k: t.id for k, t in teachers.items()}


def test_teacher_design_fixed_n_one_teacher_per_seed_shared_by_every_n(registry, tmp_path):
    plan = _teacher_design_plan(registry, tmp_path, {"strategy": "multi", "n": 16})
    teachers = _teachers(plan)
    for seed in (0, 1):
        (one,) = {teachers[(n, seed)].id for n in (4, 12)}  # shared across N
        job = plan.job(one)
        assert (job.component, job.n, job.seed) == ("multi", 16, seed)
    assert teachers[(4, 0)].id != teachers[(4, 1)].id
    # it is no teacher of the same-N design, and it trains on the seed's first 16 pool cases
    same = _teachers(_teacher_design_plan(registry, tmp_path, {"n": "same"}))
    assert not {t.id for t in teachers.values()} & {t.id for t in same.values()}
    assert plan.protocol.subset_sizes == (4, 12, 16)
    # the students differ from the same-N design's (their teacher's id is in theirs)
    assert {j.id for j in plan.jobs if j.component == "kd"}.isdisjoint(
        {t.id for t in same.values()})
    # and `kdbench plan --json` says the same
    _teacher_design_plan(registry, tmp_path, {"strategy": "multi", "n": 16})
    out = run_cli("plan", str(tmp_path / "design.yaml"), "--json")
    assert out.returncode == 0, out.stderr
    jobs = {j["id"]: j for j in json.loads(out.stdout)["jobs"]}
    students = [j for j in jobs.values() if j["component"] == "kd"]
    teachers = {(j["seed"], jobs[j["depends_on"]["teacher"]]["n"]) for j in students}
    assert len(students) == 4 and teachers == {(0, 16), (1, 16)}


def test_teacher_design_mono_is_the_mono_job_born_again(registry, tmp_path):
    plan = _teacher_design_plan(registry, tmp_path, {"strategy": "mono"})
    teachers = _teachers(plan)
    monos = {(j.n, j.seed): j for j in plan.jobs if j.component == "mono"}
    for key, t in teachers.items():
        assert t.component == "mono" and t.modalities.training == ("t1ce",)
        assert t.id == monos[key].id  # the mono strategy's own Job, in both roles
        assert sorted(map(str, t.roles)) == ["strategy mono @ t1ce_only",
                                             "teacher of kd @ t1ce_only"]
    multi = _teachers(_teacher_design_plan(registry, tmp_path, "multi"))
    kd_mono = {j.id for j in plan.jobs if j.component == "kd"}
    assert len({t.id for t in teachers.values()} | {t.id for t in multi.values()}) == 8
    assert kd_mono.isdisjoint(j.id for j in _teacher_design_plan(
        registry, tmp_path, "multi").jobs)


def test_teacher_design_errors(registry, tmp_path):
    import yaml

    from kdbench.errors import KdbenchError

    data = yaml.safe_load(DEMO.read_text())
    data["strategies"] = [{"name": "mono", "teacher": {"n": 8}},
                          {"name": "kd", "teacher": {"strategy": "mono", "n": 1}},
                          {"name": "kd", "label": "kd_big", "teacher": {"n": 500}}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(KdbenchError) as err:
        load_protocol(path, registry)
    text = str(err.value)
    assert "strategies[1].teacher.n" in text and "at least 2 cases" in text
    data["strategies"][1]["teacher"]["n"] = 8
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(KdbenchError) as err:
        load_protocol(path, registry)
    text = str(err.value)
    assert "strategies[0].teacher" in text and "takes no teacher" in text
    assert "strategies[2].teacher.n" in text and "training pool" in text


def test_fewer_seeds_at_large_n(registry, tmp_path):
    """`seeds_per_n`: the first k seeds at the listed N, every seed elsewhere; the Jobs that
    run are those of the full grid (the same ids)."""
    import yaml

    from kdbench.errors import KdbenchError

    data = yaml.safe_load(DEMO.read_text())
    data.update(training_sizes=[4, 12], seeds=[0, 1, 2, 3, 4], seeds_per_n={12: 2})
    path = tmp_path / "fewer.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = build_plan(load_protocol(path, registry), registry)
    seeds = {n: sorted({j.seed for j in plan.jobs if j.n == n}) for n in (4, 12)}
    assert seeds == {4: [0, 1, 2, 3, 4], 12: [0, 1]}
    data.pop("seeds_per_n")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    full = {j.id for j in build_plan(load_protocol(path, registry), registry).jobs}
    assert {j.id for j in plan.jobs} <= full and len(plan.jobs) == 3 * (5 + 2)
    for bad, message in (({40: 2}, "N=40 is not one of the training sizes"),
                         ({12: 6}, "k must be 1 to 5, got 6")):
        data["seeds_per_n"] = bad
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        with pytest.raises(KdbenchError, match=message):
            load_protocol(path, registry)

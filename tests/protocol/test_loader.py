"""Protocols: the shipped ones validate; malformed ones fail with distinct, located messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.errors import KdbenchError, ProtocolError
from kdbench.protocol import load_protocol

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo.yaml", "brats2021_learning_curve.yaml"])
def test_shipped_protocols_validate(registry, name):
    protocol = load_protocol(ROOT / "protocols" / name, registry)
    assert protocol.kdbench_protocol == 1
    assert [s.key for s in protocol.strategies] == ["mono", "multi", "kd"]


def test_learning_curve_protocol_content(registry):
    p = load_protocol(ROOT / "protocols" / "brats2021_learning_curve.yaml", registry)
    assert p.training_sizes == (25, 50, 100, 200, 400, 700, 1000)
    assert p.split.test_size == 251 and p.seeds == (0, 1, 2)
    assert [s.subsets() for s in p.scenarios] == [[("t1ce",)], [("flair",)]]


def _problems(registry, write_protocol, data) -> list[str]:
    with pytest.raises(ProtocolError) as info:
        load_protocol(write_protocol(data), registry)
    return info.value.problems


def _line(text: str, key: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith(key))


def test_five_faults_give_five_distinct_located_messages(registry, demo_data, write_protocol):
    faults = {
        "unknown key": (lambda d: d.update(trainng_epochs=3),
                        "trainng_epochs (line {line}): unknown key 'trainng_epochs'", "trainng"),
        "wrong type": (lambda d: d.update(seeds=[0, "one"]),
                       "seeds[1] (line {line}): Input should be a valid integer", "- one"),
        "unknown plugin": (lambda d: d["strategies"][1].update(name="multy"),
                           "strategies[1].name (line {line}): unknown strategy 'multy' "
                           "(registered: genkd, hemis, kd, label_smoothing, mono, multi, "
                               "pseudo_label, synthesis, uhved); "
                           "did you mean 'multi'?",
                           "- name: multy"),
        "N above pool": (lambda d: d.update(training_sizes=[4, 8, 40]),
                         "training_sizes[2] (line {line}): N=40 is larger than the training pool "
                         "of 16 cases (24 in the dataset minus 8 for testing)", "- 40"),
        "test too big": (lambda d: d["split"].update(test_size=24),
                         "split.test_size (line {line}): a test set of 24 cases leaves no "
                         "training case (the dataset has 24)", "test_size"),
    }
    messages = []
    for name, (mutate, expected, key) in faults.items():
        data = {k: (v.copy() if isinstance(v, dict) else v) for k, v in demo_data.items()}
        data["strategies"] = [dict(s) for s in demo_data["strategies"]]
        mutate(data)
        path = write_protocol(data)
        problems = _problems(registry, lambda _, p=path: p, None)
        assert len(problems) == 1, (name, problems)
        assert expected.format(line=_line(path.read_text(), key)) in problems[0], (name, problems)
        messages.append(problems[0])
    assert len(set(messages)) == 5


def test_all_problems_reported_together(registry, demo_data, write_protocol):
    demo_data["scenarios"][0]["available"] = ["flare"]
    demo_data["strategies"][0]["hparams"] = {"lr": 0.1}
    demo_data["strategies"][0]["teacher"] = "multi"
    demo_data["strategies"][2]["hparams"] = {"temperatur": 4}
    demo_data["statistics"]["baseline"] = "nobody"
    demo_data["dataset"]["options"]["shape"] = [8, 48, 48]
    demo_data["backbone"]["options"]["planner"] = "ResEncXL"
    with pytest.raises(ProtocolError) as info:
        load_protocol(write_protocol(demo_data), registry)
    problems = info.value.problems
    # schema problems are reported first; fix them and the plugin checks speak
    assert len(problems) == 1 and "unknown modality 'flare'" in problems[0]
    demo_data["scenarios"][0]["available"] = ["flair"]
    problems = _problems(registry, write_protocol, demo_data)
    text = "\n".join(problems)
    assert len(problems) == 6, text
    assert "strategies[0].hparams" in text and "unknown key 'lr'" in text
    assert "strategies[0].teacher" in text and "takes no teacher" in text
    assert "did you mean 'temperature'" in text
    assert "statistics.baseline" in text and "'nobody'" in text
    assert "dataset.options.shape" in text
    assert "backbone.options.planner" in text and "'ResEncXL'" in text


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name: x\n  bad: [\n", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_unreadable_protocols(registry, write_protocol, content, expected):
    with pytest.raises(ProtocolError, match=expected):
        load_protocol(write_protocol(content), registry)


def test_yaml_error_has_a_line(registry, write_protocol):
    with pytest.raises(ProtocolError, match=r"line \d+: not valid YAML"):
        load_protocol(write_protocol("kdbench_protocol: 1\nname: [unclosed\n"), registry)


def test_missing_file(registry, tmp_path):
    with pytest.raises(KdbenchError, match="not found"):
        load_protocol(tmp_path / "nope.yaml", registry)


def test_missing_fields_and_schema_version(registry, demo_data, write_protocol):
    del demo_data["training"]
    demo_data["kdbench_protocol"] = 2
    text = "\n".join(_problems(registry, write_protocol, demo_data))
    assert "training: required field is missing" in text
    assert "kdbench_protocol (line 1): Input should be 1, got 2" in text


def test_semantic_rules(registry, demo_data, write_protocol):
    demo_data["strategies"][2]["hparams"] = "tuned"
    demo_data["strategies"].append({"name": "mono"})
    demo_data["scenarios"].append({"name": "x", "training": ["t1", "t1ce"],
                                   "available": ["flair"]})
    text = "\n".join(_problems(registry, write_protocol, demo_data))
    assert "available modalities ['flair'] are not among the training modalities" in text
    demo_data["scenarios"][1]["training"].append("flair")
    text = "\n".join(_problems(registry, write_protocol, demo_data))
    assert "strategy labels must be unique; repeated: ['mono'] (add `label:`)" in text
    demo_data["strategies"][-1]["label"] = "mono_again"
    demo_data["scenarios"][1] = {"name": "all", "available": "all"}
    text = "\n".join(_problems(registry, write_protocol, demo_data))
    assert "'tuned' needs a `tuning:` section" in text
    demo_data["tuning"] = {"trials": 4}
    protocol = load_protocol(write_protocol(demo_data), registry)
    assert len(protocol.scenarios[1].subsets()) == 15


def test_tuning_rules(registry, demo_data, write_protocol):
    demo_data["strategies"][0]["hparams"] = "tuned"  # mono: nothing to search
    demo_data["tuning"] = {"trials": 4, "n": 5}
    text = "\n".join(_problems(registry, write_protocol, demo_data))
    assert "strategies[0].hparams" in text and "declares no search space" in text
    assert "tuning.n" in text and "tuning N=5 is not one of the training sizes [4, 12]" in text
    demo_data["strategies"][0]["hparams"] = {}
    demo_data["strategies"][2]["hparams"] = "tuned"  # kd: its declared ranges
    demo_data["tuning"]["n"] = 12
    assert load_protocol(write_protocol(demo_data), registry).tuning.n == 12


def test_unknown_teacher(registry, demo_data, write_protocol):
    demo_data["strategies"][2]["teacher"] = "sam_med3d"
    text = "\n".join(_problems(registry, write_protocol, demo_data))
    assert "strategies[2].teacher" in text and "unknown teacher 'sam_med3d'" in text


def test_all_combinations_protocol_plans_15_coordinates(registry):
    from kdbench.modalities import all_combinations
    from kdbench.plan import build_plan

    p = load_protocol(ROOT / "protocols" / "brats2021_all_combinations.yaml", registry)
    assert [s.key for s in p.strategies] == ["mono", "multi", "hemis", "uhved"]
    plan = build_plan(p, registry)
    fifteen = all_combinations(("t1", "t1ce", "t2", "flair"))
    assert len(fifteen) == 15
    for n in p.training_sizes:
        for seed in p.seeds:
            jobs = [j for j in plan.jobs if (j.n, j.seed) == (n, seed)]
            for name in ("hemis", "uhved"):
                (job,) = [j for j in jobs if j.component == name]  # one model ...
                assert sorted(job.modalities.evaluate) == sorted(fifteen)  # ... 15 coordinates
                assert job.modalities.training == ("t1", "t1ce", "t2", "flair")
            mono = [j for j in jobs if j.component == "mono"]
            assert sorted(j.modalities.evaluate[0] for j in mono) == sorted(fifteen)
            assert all(j.modalities.training == j.modalities.evaluate[0] for j in mono)
            assert len([j for j in jobs if j.component == "multi"]) == 1
    assert len(plan.jobs) == 2 * 3 * (15 + 1 + 1 + 1)

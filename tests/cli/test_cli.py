"""The command line as a user runs it: exit codes, JSON output, one-line errors."""

from __future__ import annotations

import json

import pytest
from helpers import DEMO, run_cli

STRATEGY = """
from kdbench import Strategy, hookimpl

class Extra(Strategy):
    '''From a plugins folder.'''
    name = "{name}"

@hookimpl
def kdbench_register_strategies(registry):
    registry.add(Extra)
"""


def test_help_lists_the_nouns():
    out = run_cli("--help")
    assert out.returncode == 0
    for noun in ("plugins", "plan", "protocol", "data"):
        assert noun in out.stdout


def test_plugins_json_and_plugins_dir(tmp_path):
    out = run_cli("plugins", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = {p["name"]: p for p in data["plugins"]}
    assert names["kd"]["registered"] == {"strategies": ["kd"]}
    assert names["phantom"]["registered"] == {"datasets": ["phantom"]}
    assert set(data["components"]["strategies"]) == {"mono", "multi", "kd", "hemis", "uhved",
                                                     "synthesis", "genkd", "label_smoothing",
                                                     "pseudo_label"}
    assert set(data["components"]["teachers"]) == {"multi", "mono", "synthesis", "foundation",
                                                   "hemis", "uhved"}
    assert set(data["components"]["generators"]) == {"unet_generator"}
    assert names["hetero_modal"]["registered"] == {"strategies": ["hemis", "uhved"],
                                                   "teachers": ["hemis", "uhved"]}

    (tmp_path / "extra.py").write_text(STRATEGY.format(name="extra"))
    out = run_cli("--plugins-dir", str(tmp_path), "plugins", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["components"]["strategies"]["extra"]["plugin"] == "extra"

    (tmp_path / "extra.py").write_text(STRATEGY.format(name="kd"))
    out = run_cli("--plugins-dir", str(tmp_path), "plugins")
    assert out.returncode == 2
    assert "two strategies are named 'kd'" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_plugins_dir_from_environment(tmp_path):
    (tmp_path / "extra.py").write_text(STRATEGY.format(name="extra"))
    out = run_cli("plugins", env={"KDBENCH_PLUGINS_DIR": str(tmp_path)})
    assert out.returncode == 0 and "extra" in out.stdout


def test_validate_and_plan(tmp_path):
    out = run_cli("protocol", "validate", str(DEMO))
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    out = run_cli("plan", str(DEMO))
    assert out.returncode == 0 and "12 jobs in 2 waves" in out.stdout
    plan = json.loads(run_cli("plan", str(DEMO), "--json").stdout)
    assert len(plan["jobs"]) == 12 and len(plan["waves"]) == 2


def test_bad_protocol_is_a_clean_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("name: kd", "name: kdd"))
    for command in (["protocol", "validate"], ["plan"]):
        out = run_cli(*command, str(bad))
        assert out.returncode == 2
        assert "unknown strategy 'kdd'" in out.stderr and "did you mean 'kd'" in out.stderr
        assert "Traceback" not in out.stderr
    out = run_cli("plan", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "not found" in out.stderr


def test_data_synth(tmp_path):
    out = run_cli("data", "synth", "--out", str(tmp_path / "ph"), "-o", "cases=2",
                  "-o", "shape=[24,24,24]")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "ph").glob("BraTS2021_*")) == [
        "BraTS2021_00000", "BraTS2021_00001"]
    out = run_cli("data", "synth", "--out", str(tmp_path / "x"), "-o", "shape=[8,8,8]")
    assert out.returncode == 2 and "options.shape" in out.stderr
    assert not (tmp_path / "x").exists()
    out = run_cli("data", "synth", "--out", str(tmp_path / "x"), "--dataset", "brats")
    assert out.returncode == 2 and "read from disk" in out.stderr
    out = run_cli("data", "synth", "--out", str(tmp_path / "x"), "-o", "cases")
    assert out.returncode == 2 and "KEY=VALUE" in out.stderr


def test_data_prepare_reports_bad_data_and_writes_nothing(tmp_path):
    from release_factory import make_bad_release

    source, expected = make_bad_release(tmp_path / "bad")
    data_dir = tmp_path / "data"
    out = run_cli("data", "prepare", "--source", str(source), "--name", "bad",
                  "--data-dir", str(data_dir))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert all(case in out.stderr for case in expected)
    assert not data_dir.exists()
    out = run_cli("data", "prepare", "--source", str(source))
    assert out.returncode == 2 and "--name" in out.stderr
    out = run_cli("data", "prepare", "--protocol", "x.yaml", "--name", "y")
    assert out.returncode == 2 and "either --protocol" in out.stderr


USAGE_ERRORS = {
    "root option after the command": (["plugins", "--plugins-dir", "X"],
                                      "No such option: --plugins-dir"),
    "missing argument": (["plan"], "Missing argument"),
    "unknown command": (["nosuch"], "No such command 'nosuch'"),
    "unknown option": (["run", "--bogus"], "No such option: --bogus"),
    "bad value": ([ "run", str(DEMO), "--jobs", "abc"], "Invalid value for '--jobs'"),
    "option without its value": (["run", str(DEMO), "--executor"],
                                 "Option '--executor' requires an argument"),
    "unknown sub-command": (["protocol", "nosuch"], "No such command 'nosuch'"),
}


@pytest.mark.parametrize("kind", sorted(USAGE_ERRORS))
def test_a_usage_error_prints_the_usage_and_exits_2(kind, capsys):
    from kdbench.cli import main

    argv, message = USAGE_ERRORS[kind]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    if kind != "option without its value":  # click names no command for this one
        assert err.startswith("Usage: kdbench")


def test_a_usage_error_from_the_command_has_no_traceback():
    out = run_cli("plugins", "--plugins-dir", "X")
    assert out.returncode == 2
    assert "Usage: kdbench plugins" in out.stderr and "Traceback" not in out.stderr

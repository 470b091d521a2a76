"""Every bad input of the corpus (tests/bad_corpus.py) gets one clear message and a non-zero exit,
and nothing is written or changed anywhere: not in the inputs, not in the earlier results of the
working folder, not beside it.

The corpus is generated into a temporary folder once per session; each entry runs the command of
its ``expect.yaml`` in-process (``kdbench.cli.main(argv)``) from a fresh working folder holding
earlier results. nnU-Net's preprocessing is made to fail loudly: no entry may reach it. The slow
variant runs every entry again through the ``kdbench`` command in its own process
(``make test-slow``, or ``pytest tests/test_bad_inputs.py -m slow``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bad_corpus
import pytest
import yaml

from kdbench.cli import main

NAMES = [e.name for e in bad_corpus.ENTRIES]
#: Earlier results in the working folder, which no bad input may touch.
EARLIER = {
    "data/old/prepared.json": '{"name": "old"}\n',
    "data/old/cases.json": '{"cases": []}\n',
    "runs/demo/job-1/metrics.json": '{"dice": 0.9}\n',
    "reports/demo/2024-01-01_abc/index.html": "<html></html>\n",
    "mlruns/mlflow.db": "sqlite",
}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bad_corpus")
    bad_corpus.write_corpus(out)
    return out


def snapshot(root: Path) -> dict[str, Any]:
    """Every path under ``root`` (links not followed) -> its content hash, link target or dir."""
    found: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted({k for k in before.keys() | after.keys() if before.get(k) != after.get(k)})


def fill(value: str, entry: Path, work: Path) -> str:
    return value.replace("{entry}", str(entry)).replace("{work}", str(work))


def run(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``kdbench ARGV`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    with monkeypatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def no_nnunet(monkeypatch: pytest.MonkeyPatch) -> None:
    """nnU-Net's preprocessing fails the test if an entry reaches it (errors come first)."""
    from kdbench_plugins.nnunet_backbone import NnUNetBackbone

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a bad input reached nnU-Net's preprocessing")

    monkeypatch.setattr(NnUNetBackbone, "prepare", refuse)


def run_process(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """The ``kdbench`` command, ARGV, in its own process: (exit status, stdout, stderr)."""
    script = Path(sys.executable).parent / "kdbench"
    command = [str(script)] if script.is_file() else [sys.executable, "-P", "-m", "kdbench"]
    full = {k: v for k, v in os.environ.items() if not k.startswith("KDBENCH_")}
    out = subprocess.run([*command, *argv], capture_output=True, text=True, cwd=cwd,
                         env={**full, **env}, timeout=300)
    return out.returncode, out.stdout, out.stderr


def check_entry(name: str, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                runner: Callable[[list[str], dict[str, str], Path], tuple[int, str, str]]
                ) -> None:
    """Run entry ``name`` with ``runner`` from a fresh working folder and check its answer."""
    entry = corpus / name
    expect = yaml.safe_load((entry / "expect.yaml").read_text())
    # Two levels below tmp_path, so that a path climbing out with ../.. still lands where the
    # snapshot sees it.
    work = tmp_path / "a" / "b" / "work"
    for rel, text in EARLIER.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    for key in [k for k in os.environ if k.startswith("KDBENCH_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(work)
    env = {k: fill(v, entry, work) for k, v in (expect.get("env") or {}).items()}

    for argv in expect.get("setup") or []:
        code, _, err = runner([fill(a, entry, work) for a in argv], env, work)
        assert code == 0, f"setup {argv} failed:\n{err}"
    if expect.get("overlay"):
        shutil.copytree(entry / "overlay", work, dirs_exist_ok=True, symlinks=True)
    inputs, before = snapshot(entry), snapshot(tmp_path)

    code, out, err = runner([fill(a, entry, work) for a in expect["argv"]], env, work)

    assert code == expect["exit_code"], f"exit {code}, stderr:\n{err}"
    assert "Traceback" not in err + out
    assert err.startswith("error: ") and err.count("error: ") == 1, err
    assert re.search(expect["message"], err), f"message {expect['message']!r} not in:\n{err}"
    assert changes(inputs, snapshot(entry)) == [], "the inputs changed"
    assert changes(before, snapshot(tmp_path)) == [], "files written or changed"


@pytest.mark.parametrize("name", NAMES)
def test_bad_input(name: str, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str], no_nnunet: None) -> None:
    check_entry(name, corpus, tmp_path, monkeypatch,
                lambda argv, env, cwd: run(argv, env, monkeypatch, capsys))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_bad_input_in_its_own_process(name: str, corpus: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The same through the ``kdbench`` command, as a user runs it (about 2 s an entry)."""
    check_entry(name, corpus, tmp_path, monkeypatch, run_process)


def test_corpus_is_complete(corpus: Path) -> None:
    """One folder per entry, each with a readable expect.yaml naming a known command."""
    assert sorted(p.name for p in corpus.iterdir()) == sorted(NAMES)
    groups = {}
    for name in NAMES:
        expect = yaml.safe_load((corpus / name / "expect.yaml").read_text())
        assert set(expect) == {"group", "description", "argv", "exit_code", "message", "env",
                               "setup", "overlay"}
        assert expect["exit_code"] != 0 and expect["message"]
        re.compile(expect["message"])
        groups.setdefault(expect["group"], []).append(name)
    assert set(groups) == {"data", "protocol", "plan", "run", "plugins", "evaluate", "report"}


@pytest.mark.parametrize("fault", ["raises", "not JSON"])
def test_a_failing_backbone_leaves_no_half_dataset(fault: str, tmp_path: Path) -> None:
    """A backbone that fails while preparing (or returns a summary that is not JSON) leaves the
    earlier dataset as it was and no temporary folder (only the lock file)."""
    import release_factory as rf

    from kdbench import Backbone
    from kdbench.data.prepare import prepare_dataset
    from kdbench.errors import PluginError
    from kdbench.plugin_manager import load_plugins

    class Faulty(Backbone):
        name = "faulty"

        def prepare(self, cases, label_map, dest, options, *, name, num_processes=1):
            (dest / "half.txt").write_text("half")
            if fault == "raises":
                raise OSError("disk full")
            return {"when": object()}

    registry = load_plugins(use_env=False)
    registry.backbones.add(Faulty)
    source = rf.make_release(tmp_path / "release", "2021", n_cases=2)
    data = tmp_path / "data"
    (data / "old").mkdir(parents=True)
    (data / "old" / "prepared.json").write_text("{}")
    before = snapshot(data)
    with pytest.raises(OSError if fault == "raises" else PluginError,
                       match="disk full" if fault == "raises" else "summary that is not JSON"):
        prepare_dataset(registry, source, "ds", data, backbone="faulty")
    assert changes(before, snapshot(data)) == [".ds.lock"]

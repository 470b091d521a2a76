"""The rules of docs/security.md that the source itself must keep: YAML through a safe loader only,
no unpickling of user files, code imported only by the plugin manager; case ids safe as file
names; a hostile working folder imports nothing. The bad inputs themselves are in
tests/test_bad_inputs.py."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DEMO, ROOT

from kdbench.cases import is_safe_case_id

SOURCES = sorted([*(ROOT / "kdbench").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")])
SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
UNSAFE_YAML = {"unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader",
               "CLoader", "FullLoader", "CFullLoader", "UnsafeLoader", "CUnsafeLoader"}
#: Files allowed to import or run code they are not written with, and why.
CODE_LOADERS = {
    "kdbench/plugin_manager.py": "the *.py files of --plugins-dir / KDBENCH_PLUGINS_DIR",
    "kdbench/calibration.py": "benchmarks/calibrate.py of the kdbench checkout itself",
    "plugins/nnunet_backbone/preprocess.py": "nnU-Net planner classes from a constant table",
}
#: files still allowed torch.load with weights_only=False: none since the nnU-Net backbone reads
#: its checkpoints with an allow-list of safe globals (plugins/nnunet_backbone/checkpoint.py).
TORCH_LOAD_PENDING: set[str] = set()


def _name(node: ast.AST) -> str:
    """``yaml.load`` for ``yaml.load``, ``load`` for a bare name, ``""`` otherwise."""
    if isinstance(node, ast.Attribute):
        inner = _name(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def violations(source: str, path: str) -> Iterator[str]:
    """Every break of the rules in one file's source, as ``path:line: what``."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        where = f"{path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.module in ("yaml", "pickle", "dill"):
            bad = [a.name for a in node.names if node.module != "yaml" or a.name in UNSAFE_YAML
                   or a.name in ("load", "load_all")]
            if bad:
                yield f"{where}: from {node.module} import {', '.join(bad)}"
        if isinstance(node, ast.Attribute) and _name(node.value) == "yaml" \
                and node.attr in UNSAFE_YAML:
            yield f"{where}: yaml.{node.attr}"
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        last = name.rsplit(".", 1)[-1]
        builtin = node.func.id if isinstance(node.func, ast.Name) else ""
        module = name.split(".", 1)[0] if "." in name else ""
        if module in ("pickle", "cPickle", "_pickle", "dill", "shelve", "marshal") \
                and last in ("load", "loads", "Unpickler", "open"):
            yield f"{where}: {name}"
        if name in ("yaml.load", "yaml.load_all"):
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _name(loader).rsplit(".", 1)[-1] not in SAFE_LOADERS:
                yield f"{where}: {name} without a safe Loader"
        if last in ("read_pickle", "unpickle") or name in ("joblib.load", "dill.load"):
            yield f"{where}: {name}"
        if name in ("np.load", "numpy.load") and _is_true(_keyword(node, "allow_pickle")):
            yield f"{where}: {name}(allow_pickle=True)"
        if name == "torch.load" and not _is_true(_keyword(node, "weights_only")) \
                and path not in TORCH_LOAD_PENDING:
            yield f"{where}: torch.load without weights_only=True"
        if (builtin in ("eval", "exec", "__import__", "compile") or (module and last in (
                "import_module", "spec_from_file_location", "exec_module"))) \
                and path not in CODE_LOADERS:
            yield f"{where}: {name} (code is imported only by the plugin manager)"


def test_the_checker_finds_what_it_looks_for():
    bad = """
import pickle
import yaml
from yaml import unsafe_load
yaml.load(text)
yaml.load(text, Loader=yaml.FullLoader)
yaml.unsafe_load(text)
pickle.loads(blob)
pd.read_pickle(path)
np.load(path, allow_pickle=True)
torch.load(path)
torch.load(path, weights_only=False)
importlib.import_module(name)
eval(text)
importlib.util.spec_from_file_location("x", path)
"""
    lines = {int(v.split(":")[1]) for v in violations(bad, "kdbench/x.py")}
    assert lines == set(range(4, 16)), lines  # every line after the imports
    good = """
import yaml
yaml.safe_load(text)
yaml.load(text, Loader=yaml.SafeLoader)
yaml.compose(text, Loader=yaml.SafeLoader)
torch.load(path, map_location="cpu", weights_only=True)
np.load(path)
model.eval()
make(model).eval()
except_types = (pickle.UnpicklingError,)
"""
    assert list(violations(good, "kdbench/x.py")) == []


def test_untrusted_files_are_read_safely():
    found = [v for path in SOURCES
             for v in violations(path.read_text(encoding="utf-8"),
                                 str(path.relative_to(ROOT)))]
    assert found == []
    for path in (*CODE_LOADERS, *TORCH_LOAD_PENDING):
        assert (ROOT / path).is_file(), f"{path} is gone: remove it from the allow-list"


@pytest.mark.parametrize("case_id", [
    "../../x", "..", ".", "/etc/passwd", "a/b", "a\\b", "a\x00b", "a\nb", "tab\there", "é01",
    "e\u0301", "BraTS2021_é01", " lead", "trail ", "-flag", "_hidden", ".hidden", "a..b", "",
    "x" * 129, "C:x", "a:b", "a*b",
])
def test_unsafe_case_ids_are_refused(case_id: str):
    assert not is_safe_case_id(case_id)


@pytest.mark.parametrize("case_id", [
    "BraTS2021_00000", "BraTS-GLI-00000-000", "Brats18_2013_2_1", "BraTS20_Training_001",
    "case.1", "0", "x" * 128,
])
def test_brats_case_ids_are_accepted(case_id: str):
    assert is_safe_case_id(case_id)


def test_a_hostile_working_folder_imports_nothing(tmp_path: Path):
    """The ``kdbench`` command in a folder of Python files named like its dependencies, like
    kdbench's plugins package, and like a protocol's strategy: none is imported."""
    script = Path(sys.executable).parent / "kdbench"
    if not script.is_file():
        pytest.skip("the kdbench console script is not installed beside this Python")
    hostile = 'open("PWNED", "w").write(__name__)\n'
    for name in ("yaml", "pydantic", "typer", "rich", "pluggy", "numpy", "kd", "evil"):
        (tmp_path / f"{name}.py").write_text(hostile)
    (tmp_path / "kdbench_plugins").mkdir()
    (tmp_path / "kdbench_plugins" / "__init__.py").write_text(hostile)
    protocol = tmp_path / "p.yaml"
    protocol.write_text(DEMO.read_text().replace("- name: kd ", "- name: evil "))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KDBENCH_", "PYTHON"))}
    out = subprocess.run([str(script), "protocol", "validate", str(protocol)], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "unknown strategy 'evil'" in out.stderr, out.stderr
    assert not (tmp_path / "PWNED").exists()

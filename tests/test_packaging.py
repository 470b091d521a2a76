"""The package metadata matches the tree: every package is shipped, every built-in registered."""

import tomllib

from helpers import ROOT


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set()
    for top, name in (("kdbench", "kdbench"), ("plugins", "kdbench_plugins")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found == listed


def test_every_builtin_plugin_module_is_an_entry_point():
    eps = _pyproject()["project"]["entry-points"]["kdbench"]
    modules = {p.stem for p in (ROOT / "plugins").glob("*.py") if p.stem != "__init__"}
    modules |= {p.parent.name for p in (ROOT / "plugins").glob("*/__init__.py")}
    assert {v.removeprefix("kdbench_plugins.") for v in eps.values()} == modules


def test_torch_is_pinned_for_every_install():
    constraints = (ROOT / "constraints.txt").read_text()
    assert "torch==2.13.0" in constraints.splitlines()
    makefile = (ROOT / "Makefile").read_text()
    assert "export PIP_CONSTRAINT := $(CURDIR)/constraints.txt" in makefile
    assert "mlflow==3.17.2" in _pyproject()["project"]["dependencies"]

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


def _lock_pins() -> dict[str, str]:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_the_lock_satisfies_every_range_in_pyproject():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = _pyproject()["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"],
              *project["optional-dependencies"]["cluster"]]
    pins = _lock_pins()
    for line in wanted:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])


def test_the_environment_is_the_lock():
    """What `make install` installed is exactly what the lock names (local version labels
    such as torch's +cpu included)."""
    from importlib.metadata import PackageNotFoundError, version

    wrong = {}
    for name, pinned in _lock_pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"installed versions differ from requirements.lock: {wrong}"


def test_upper_bounds_where_kdbench_depends_on_internals():
    from packaging.requirements import Requirement

    deps = {Requirement(d).name: Requirement(d).specifier for d in
            _pyproject()["project"]["dependencies"]}
    assert not deps["nnunetv2"].contains("2.9.0") and deps["nnunetv2"].contains("2.8.1")
    assert not deps["typer"].contains("0.30.0")
    assert not deps["optuna"].contains("6.0.0")


def test_the_reference_calibration_is_package_data():
    """``kdbench plan --estimate`` reads it from the installed package, not from benchmarks/."""
    from kdbench.calibration import REFERENCE_CALIBRATION

    data = _pyproject()["tool"]["setuptools"]["package-data"]["kdbench"]
    assert REFERENCE_CALIBRATION.name in data
    assert REFERENCE_CALIBRATION.parent == ROOT / "kdbench" and REFERENCE_CALIBRATION.is_file()

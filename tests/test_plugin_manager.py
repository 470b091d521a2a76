"""Plugin discovery: entry points, plugin folders, allow-list, and every refusal."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kdbench.errors import PluginError
from kdbench.plugin_manager import load_plugins

STRATEGY_FILE = """
from kdbench import Strategy, hookimpl

class {cls}(Strategy):
    '''A strategy from a plugins folder.'''
    name = "{name}"
    version = "3"

@hookimpl
def kdbench_register_strategies(registry):
    registry.add({cls})
"""


def _plugin_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def test_builtins_load_through_entry_points(registry):
    by_name = {p.name: p for p in registry.plugins}
    for plugin in ("mono", "multi", "kd", "nnunet_backbone", "phantom", "brats"):
        assert by_name[plugin].source.startswith("entry point kdbench_plugins.")
    assert {"mono", "multi", "kd"} <= set(registry.strategies.names())
    assert registry.teachers.names() == ["foundation", "hemis", "mono", "multi", "synthesis",
                                         "uhved"]
    assert registry.generators.names() == ["unet_generator"]
    assert by_name["synthesis"].registered == {"strategies": ["synthesis"],
                                               "teachers": ["synthesis"]}
    assert by_name["foundation"].registered == {"teachers": ["foundation"]}
    assert registry.strategies.get("multi") is registry.teachers.get("multi")
    assert by_name["multi"].registered == {"strategies": ["multi"], "teachers": ["multi"]}
    assert registry.backbones.names() == ["nnunet"]
    assert {"phantom", "brats"} <= set(registry.datasets.names())


def test_plugins_dir_adds_a_strategy(tmp_path):
    folder = _plugin_dir(tmp_path, {
        "extra.py": STRATEGY_FILE.format(cls="Extra", name="extra"),
        "_private.py": "raise RuntimeError('files starting with _ are not plugins')",
    })
    registry = load_plugins([folder], use_env=False)
    entry = registry.strategies.entry("extra")
    assert entry.plugin == "extra" and entry.cls.version == "3"
    info = next(p for p in registry.plugins if p.name == "extra")
    assert info.source == f"file {folder / 'extra.py'}"
    assert info.registered == {"strategies": ["extra"]}


def test_duplicate_name_names_both_sources(tmp_path):
    folder = _plugin_dir(tmp_path, {"dup.py": STRATEGY_FILE.format(cls="Dup", name="mono")})
    with pytest.raises(PluginError) as info:
        load_plugins([folder], use_env=False)
    text = str(info.value)
    assert "two strategies are named 'mono'" in text
    assert "plugin 'mono' (kdbench_plugins.mono.Mono)" in text
    assert "plugin 'dup' (kdbench_dir_plugins.dup.Dup)" in text


def test_unknown_hook_is_rejected_with_a_suggestion(tmp_path):
    folder = _plugin_dir(tmp_path, {"typo.py": """
        from kdbench import hookimpl

        @hookimpl
        def kdbench_register_strategy(registry):
            pass
    """})
    with pytest.raises(PluginError) as info:
        load_plugins([folder], use_env=False)
    assert "'kdbench_register_strategy', which is not a kdbench hook" in str(info.value)
    assert "did you mean 'kdbench_register_strategies'" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("raise ImportError('no module named foo')",
         "plugin file {path} failed to import: ImportError: no module named foo"),
        ("""
         from kdbench import hookimpl
         @hookimpl
         def kdbench_register_strategies(registry):
             registry.add(int)
         """, "registered <class 'int'> as a strategy, but it is not a subclass of "
              "kdbench.Strategy"),
        ("""
         from kdbench import hookimpl
         @hookimpl
         def kdbench_register_strategies(registry):
             return ["mono"]
         """, "returned list ['mono']; a registration hook must call registry.add(cls)"),
        ("""
         from kdbench import hookimpl
         @hookimpl
         def kdbench_register_strategies(reg):
             pass
         """, "is invalid"),
        ("""
         from kdbench import Strategy, hookimpl
         class Bad(Strategy):
             name = "Bad Name"
         @hookimpl
         def kdbench_register_strategies(registry):
             registry.add(Bad)
         """, "`name` must be a lower-case identifier"),
        ("""
         from kdbench import Strategy, hookimpl
         class NoTeacher(Strategy):
             name = "needs"
             requires = ("teacher",)
         @hookimpl
         def kdbench_register_strategies(registry):
             registry.add(NoTeacher)
         """, "must set `default_teacher`"),
        ("""
         from kdbench import hookimpl
         @hookimpl
         def kdbench_register_metrics(registry):
             raise KeyError("boom")
         """, "raised in kdbench_register_metrics: KeyError"),
    ],
    ids=["import-error", "wrong-type", "returns-value", "bad-signature", "bad-name",
         "requires-without-default", "raises-in-hook"],
)
def test_bad_plugins_fail_clearly(tmp_path, text, expected):
    folder = _plugin_dir(tmp_path, {"bad.py": text})
    with pytest.raises(PluginError) as info:
        load_plugins([folder], use_env=False)
    message = str(info.value)
    assert expected.format(path=folder / "bad.py") in message
    assert "bad" in message  # the plugin is named


def test_allow_list_and_plugins_dir_from_environment(tmp_path, monkeypatch):
    folder = _plugin_dir(tmp_path, {"extra.py": STRATEGY_FILE.format(cls="Extra", name="extra")})
    monkeypatch.setenv("KDBENCH_PLUGINS_DIR", str(folder))
    monkeypatch.setenv("KDBENCH_LOAD_PLUGINS", "mono, extra")
    registry = load_plugins()
    assert [p.name for p in registry.plugins] == ["mono", "extra"]
    assert registry.strategies.names() == ["extra", "mono"]
    monkeypatch.setenv("KDBENCH_LOAD_PLUGINS", "")
    assert load_plugins().plugins == []


def test_missing_plugins_dir(tmp_path):
    with pytest.raises(PluginError, match="does not exist"):
        load_plugins([tmp_path / "nowhere"], use_env=False)


def test_importing_kdbench_loads_no_plugin_and_no_heavy_library():
    code = (
        "import sys, kdbench, kdbench.plan, kdbench.protocol, kdbench.plugin_manager;"
        "heavy = [m for m in ('torch', 'monai', 'nnunetv2', 'mlflow', 'optuna', 'kdbench_plugins',"
        " 'scipy', 'nibabel') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

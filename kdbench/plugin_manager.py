"""Finding and loading plugins into a :class:`~kdbench.registry.Registry`.

Plugins come from three places, in this order:

1. the ``kdbench`` entry-point group (the built-ins in ``plugins/`` are registered this way in
   ``pyproject.toml``, exactly as a third-party package would register its own);
2. every ``*.py`` file (not starting with ``_``) in ``--plugins-dir DIR`` or in the folders of
   ``KDBENCH_PLUGINS_DIR`` (``os.pathsep``-separated);
3. nothing else: importing :mod:`kdbench` loads no plugin.

``KDBENCH_LOAD_PLUGINS`` is an allow-list of plugin names (comma-separated; entry-point names or
file stems). When set, only those plugins load; set to an empty string, none do.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType

import pluggy

from kdbench import hookspecs
from kdbench.errors import PluginError
from kdbench.registry import CATEGORIES, PluginInfo, Registry

ENTRY_POINT_GROUP = "kdbench"
ENV_PLUGINS_DIR = "KDBENCH_PLUGINS_DIR"
ENV_LOAD_PLUGINS = "KDBENCH_LOAD_PLUGINS"
_DIR_PACKAGE = "kdbench_dir_plugins"


def allow_list_from_env() -> set[str] | None:
    """The ``KDBENCH_LOAD_PLUGINS`` allow-list, or ``None`` when the variable is unset."""
    raw = os.environ.get(ENV_LOAD_PLUGINS)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def plugin_dirs_from_env() -> list[Path]:
    """The folders named by ``KDBENCH_PLUGINS_DIR``."""
    raw = os.environ.get(ENV_PLUGINS_DIR, "")
    return [Path(p) for p in raw.split(os.pathsep) if p.strip()]


def _entry_points() -> list[EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        other = found.get(ep.name)
        if other is not None and other.value != ep.value:
            raise PluginError(
                f"two installed packages declare the kdbench plugin {ep.name!r} "
                f"({other.value} and {ep.value}); uninstall one of them"
            )
        found[ep.name] = ep
    return [found[name] for name in sorted(found)]


def _load_entry_point(ep: EntryPoint) -> tuple[ModuleType, str]:
    dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown package"
    source = f"entry point {ep.value} ({dist})"
    try:
        module = ep.load()
    except Exception as exc:  # any failure inside a plugin's import is the plugin's fault
        raise PluginError(
            f"plugin {ep.name!r} ({source}) failed to import: {type(exc).__name__}: {exc}; "
            f"fix or uninstall it, or leave it out with {ENV_LOAD_PLUGINS}"
        ) from exc
    return module, source


def _load_file(path: Path) -> ModuleType:
    module_name = f"{_DIR_PACKAGE}.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so that classes defined there pickle and introspect
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise PluginError(
            f"plugin file {path} failed to import: {type(exc).__name__}: {exc}; fix the file "
            "or move it out of the plugins folder"
        ) from exc
    return module


def _dir_files(dirs: Iterable[Path]) -> list[Path]:
    files = []
    for folder in dirs:
        if not folder.is_dir():
            raise PluginError(
                f"plugins folder {folder} does not exist or is not a folder; "
                "give an existing folder to --plugins-dir or KDBENCH_PLUGINS_DIR"
            )
        files += sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    return files


def _register(pm: pluggy.PluginManager, module: ModuleType, name: str, source: str) -> None:
    if pm.has_plugin(name):
        raise PluginError(
            f"two plugins are named {name!r} ({source} and {pm.get_plugin(name).__name__}); "
            "rename the file or leave one out with " + ENV_LOAD_PLUGINS
        )
    try:
        pm.register(module, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} ({source}) is invalid: {exc}") from exc


def _check_pending(pm: pluggy.PluginManager, sources: dict[str, str]) -> None:
    known = [name for name in dir(hookspecs) if name.startswith("kdbench_")]
    for hook_name in dir(pm.hook):
        if not hook_name.startswith("kdbench_") or hook_name in known:
            continue
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            close = difflib.get_close_matches(hook_name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PluginError(
                f"plugin {impl.plugin_name!r} ({sources.get(impl.plugin_name, '?')}) implements "
                f"{hook_name!r}, which is not a kdbench hook{hint} (see docs/plugin_hooks.md)"
            )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:  # belt and braces: anything we did not name
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc


def load_plugins(
    plugins_dirs: Iterable[Path] | None = None,
    allow: set[str] | None = None,
    *,
    use_env: bool = True,
) -> Registry:
    """Find, import and register every plugin; return the filled registry.

    Args:
        plugins_dirs: folders of ``*.py`` plugin files, in addition to ``KDBENCH_PLUGINS_DIR``.
        allow: names of the plugins to load (``None``: all). ``KDBENCH_LOAD_PLUGINS`` applies
            when this is ``None`` and ``use_env`` is true.
        use_env: read ``KDBENCH_PLUGINS_DIR`` and ``KDBENCH_LOAD_PLUGINS``.

    Raises:
        PluginError: a plugin fails to import, implements an unknown hook, registers a class
            of the wrong type, a duplicate name, or returns a value from a registration hook.
    """
    if allow is None and use_env:
        allow = allow_list_from_env()
    dirs = list(plugins_dirs or []) + (plugin_dirs_from_env() if use_env else [])

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    sources: dict[str, str] = {}
    for ep in _entry_points():
        if allow is not None and ep.name not in allow:
            continue
        module, source = _load_entry_point(ep)
        _register(pm, module, ep.name, source)
        sources[ep.name] = source
    for path in _dir_files(dirs):
        if allow is not None and path.stem not in allow:
            continue
        source = f"file {path}"
        if pm.has_plugin(path.stem):
            raise PluginError(
                f"plugin file {path} has the name {path.stem!r}, which {sources[path.stem]} "
                "already uses; rename the file"
            )
        _register(pm, _load_file(path), path.stem, source)
        sources[path.stem] = source
    _check_pending(pm, sources)
    return _fill_registry(pm, sources)


def _fill_registry(pm: pluggy.PluginManager, sources: dict[str, str]) -> Registry:
    registry = Registry()
    registry.plugin_manager = pm  # type: ignore[attr-defined]
    plugins = [(name, pm.get_plugin(name)) for name in sources]
    infos = {
        name: PluginInfo(
            name=name,
            source=sources[name],
            hooks=sorted(c.name for c in (pm.get_hookcallers(plugin) or [])),
        )
        for name, plugin in plugins
    }
    for category, (_, hook_name) in CATEGORIES.items():
        target = registry.categories[category]
        for name, _ in plugins:
            if hook_name not in infos[name].hooks:
                continue
            others = [p for n, p in plugins if n != name]
            call = pm.subset_hook_caller(hook_name, remove_plugins=others)
            before = set(target.names())
            target._plugin = name
            try:
                results = call(registry=target)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {name!r} ({sources[name]}) raised in {hook_name}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            finally:
                target._plugin = "<direct>"
            returned = [r for r in results if r is not None]
            if returned:
                raise PluginError(
                    f"plugin {name!r} ({sources[name]}): {hook_name} returned "
                    f"{type(returned[0]).__name__} {returned[0]!r:.60}; a registration hook must "
                    "call registry.add(cls) for each class and return None"
                )
            added = sorted(set(target.names()) - before)
            if added:
                infos[name].registered[category] = added
    registry.plugins = [infos[name] for name, _ in plugins]
    return registry

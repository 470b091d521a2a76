"""The registry: every class the loaded plugins provide, by category and name."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kdbench.components import (
    Backbone,
    Component,
    Dataset,
    Executor,
    Generator,
    Metric,
    Reporter,
    Strategy,
    Teacher,
)
from kdbench.errors import PluginError

#: category -> (base class, registration hook)
CATEGORIES: dict[str, tuple[type[Component], str]] = {
    "strategies": (Strategy, "kdbench_register_strategies"),
    "backbones": (Backbone, "kdbench_register_backbones"),
    "teachers": (Teacher, "kdbench_register_teachers"),
    "generators": (Generator, "kdbench_register_generators"),
    "datasets": (Dataset, "kdbench_register_datasets"),
    "metrics": (Metric, "kdbench_register_metrics"),
    "executors": (Executor, "kdbench_register_executors"),
    "reporters": (Reporter, "kdbench_register_reporters"),
}


@dataclass(frozen=True)
class Entry:
    """A registered class and the plugin that registered it."""

    cls: type[Component]
    plugin: str

    @property
    def where(self) -> str:
        """``plugin 'x' (module.Class)``: enough to find the source of a conflict."""
        return f"plugin {self.plugin!r} ({self.cls.__module__}.{self.cls.__qualname__})"


@dataclass
class CategoryRegistry:
    """The classes of one category (e.g. strategies), keyed by their ``name``.

    This is the object a registration hook receives: it calls :meth:`add`.
    """

    category: str
    base: type[Component]
    _entries: dict[str, Entry] = field(default_factory=dict)
    _plugin: str = "<direct>"

    def add(self, cls: type[Component]) -> type[Component]:
        """Register ``cls``; return it (so ``add`` also works as a class decorator).

        Raises:
            PluginError: ``cls`` is not a subclass of the category's base class, declares an
                invalid name/version/hparams, or its name is taken (both sources named).
        """
        noun = self.category[:-1] if not self.category.endswith("ies") else "strategy"
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(
                f"plugin {self._plugin!r} registered {cls!r} as a {noun}, but it is not a "
                f"subclass of kdbench.{self.base.__name__}; derive it from that class"
            )
        problems = cls.validate_declaration()
        if problems:
            raise PluginError(
                f"plugin {self._plugin!r} registered {cls.__module__}.{cls.__qualname__} as a "
                f"{noun}, but " + "; ".join(problems)
            )
        new = Entry(cls, self._plugin)
        old = self._entries.get(cls.name)
        if old is not None and old.cls is not cls:
            raise PluginError(
                f"two {self.category} are named {cls.name!r}: {old.where} and {new.where}; "
                "rename one, or leave one plugin out with KDBENCH_LOAD_PLUGINS"
            )
        self._entries[cls.name] = new
        return cls

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        """The entry for ``name``; raises ``KeyError`` with the known names and a suggestion."""
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def get(self, name: str) -> type[Component]:
        """The class registered under ``name`` (``KeyError`` with a helpful message if none)."""
        return self.entry(name).cls

    def unknown_message(self, name: str) -> str:
        """``unknown strategy 'kdd'; registered: kd, mono; did you mean 'kd'?``"""
        noun = "strategy" if self.category == "strategies" else self.category[:-1]
        known = ", ".join(self.names()) or "none"
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {noun} {name!r} (registered: {known}){hint}"


@dataclass
class PluginInfo:
    """One loaded plugin: where it came from and what it registered."""

    name: str
    source: str
    hooks: list[str]
    registered: dict[str, list[str]] = field(default_factory=dict)


class Registry:
    """All categories; built by :func:`kdbench.plugin_manager.load_plugins`."""

    def __init__(self) -> None:
        self.categories: dict[str, CategoryRegistry] = {
            cat: CategoryRegistry(cat, base) for cat, (base, _) in CATEGORIES.items()
        }
        self.plugins: list[PluginInfo] = []

    def __getattr__(self, category: str) -> CategoryRegistry:
        categories = self.__dict__.get("categories", {})
        if category in categories:
            return categories[category]
        raise AttributeError(category)

    def to_json(self) -> dict[str, Any]:
        """What ``kdbench plugins --json`` prints."""
        return {
            "plugins": [
                {"name": p.name, "source": p.source, "hooks": p.hooks, "registered": p.registered}
                for p in self.plugins
            ],
            "components": {
                cat: {
                    name: {"plugin": reg.entry(name).plugin, **reg.get(name).describe()}
                    for name in reg.names()
                }
                for cat, reg in self.categories.items()
            },
        }

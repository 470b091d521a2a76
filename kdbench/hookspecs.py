"""The hook specifications of kdbench: the whole plugin API, in one module.

A plugin is a module (found through the ``kdbench`` entry-point group or a ``--plugins-dir``)
holding functions named after these hooks and marked with :data:`kdbench.hookimpl`. Every hook
is a *registration* hook: it receives the registry of one category and calls
``registry.add(SomeClass)`` for each class it provides; it returns ``None``.

Example:
    >>> from kdbench import Strategy, hookimpl
    >>> class MyStrategy(Strategy):
    ...     '''A strategy of mine.'''
    ...     name = "mine"
    >>> @hookimpl
    ... def kdbench_register_strategies(registry):
    ...     registry.add(MyStrategy)

``docs/plugin_hooks.md`` documents each hook with its exact signature (a test checks it).
"""

from __future__ import annotations

import pluggy

from kdbench.registry import CategoryRegistry

PROJECT = "kdbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def kdbench_register_strategies(registry: CategoryRegistry) -> None:
    """Register strategy classes (subclasses of :class:`kdbench.Strategy`).

    :param registry: the strategies' registry; call ``registry.add(cls)`` for each class.
    """


@hookspec
def kdbench_register_backbones(registry: CategoryRegistry) -> None:
    """Register backbones (subclasses of :class:`kdbench.Backbone`): networks and their recipe.

    :param registry: the backbones' registry; call ``registry.add(cls)`` for each class.
    """


@hookspec
def kdbench_register_teachers(registry: CategoryRegistry) -> None:
    """Register teachers (subclasses of :class:`kdbench.Teacher`) that students distil from.

    :param registry: the teachers' registry; call ``registry.add(cls)`` for each class.
    """


@hookspec
def kdbench_register_generators(registry: CategoryRegistry) -> None:
    """Register generators (subclasses of :class:`kdbench.Generator`) of missing modalities.

    :param registry: the generators' registry; call ``registry.add(cls)`` for each class.
    """


@hookspec
def kdbench_register_datasets(registry: CategoryRegistry) -> None:
    """Register dataset sources (subclasses of :class:`kdbench.Dataset`).

    :param registry: the datasets' registry; call ``registry.add(cls)`` for each class.
    """


@hookspec
def kdbench_register_metrics(registry: CategoryRegistry) -> None:
    """Register per-case metrics (subclasses of :class:`kdbench.Metric`).

    :param registry: the metrics' registry; call ``registry.add(cls)`` for each class.
    """


@hookspec
def kdbench_register_executors(registry: CategoryRegistry) -> None:
    """Register executors (subclasses of :class:`kdbench.Executor`) that run a plan's Jobs.

    :param registry: the executors' registry; call ``registry.add(cls)`` for each class.
    """


@hookspec
def kdbench_register_reporters(registry: CategoryRegistry) -> None:
    """Register report sections (subclasses of :class:`kdbench.Reporter`).

    :param registry: the reporters' registry; call ``registry.add(cls)`` for each class.
    """

"""The base class of everything a plugin can register."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from kdbench.components.hparams import HParam, Scalar, resolve

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


class Component:
    """A registrable class: a strategy, backbone, teacher, generator, dataset, metric, ...

    Subclasses set ``name`` (unique within their category, lower-case, file-name safe) and
    ``version``. The version enters the identity of every Job the component takes part in: bump
    it when a change alters results, and earlier results stop counting (as asv does with a
    benchmark's source hash).

    Attributes:
        name: registry key, e.g. ``"kd"``.
        version: a string; changing it changes the ids of this component's Jobs.
        hparams: declared hyper-parameters with defaults and search spaces.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    hparams: ClassVar[Mapping[str, HParam]] = {}

    @classmethod
    def description(cls) -> str:
        """First line of the class docstring."""
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @classmethod
    def resolve_hparams(cls, overrides: Mapping[str, Any] | None = None) -> dict[str, Scalar]:
        """Defaults merged with ``overrides``; ``ValueError`` on unknown or ill-typed keys."""
        return resolve(cls.hparams, overrides or {})

    @classmethod
    def validate_declaration(cls) -> list[str]:
        """Problems with the class's declaration (empty when it is fine)."""
        problems = []
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(
                f"`name` must be a lower-case identifier such as 'my_strategy', got {name!r}"
            )
        if not isinstance(cls.version, str) or not cls.version:
            problems.append(f"`version` must be a non-empty string, got {cls.version!r}")
        if not isinstance(cls.hparams, Mapping) or not all(
            isinstance(k, str) and isinstance(v, HParam) for k, v in cls.hparams.items()
        ):
            problems.append("`hparams` must map names to kdbench.HParam objects")
        return problems

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """A JSON-ready summary for ``kdbench plugins``."""
        return {
            "version": cls.version,
            "description": cls.description(),
            "hparams": {
                k: {"default": p.default, "tunable": p.tunable, "source": p.source}
                for k, p in sorted(cls.hparams.items())
            },
        }

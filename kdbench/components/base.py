"""The base class of everything a plugin can register."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from kdbench.components.hparams import HParam, HParams, Scalar

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
        Params: the pydantic model of the hyper-parameters a protocol may set (a
            :class:`kdbench.HParams` subclass whose fields are made with :func:`kdbench.hparam`).
        hparams: derived from ``Params``: each hyper-parameter's default and search space.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    Params: ClassVar[type[HParams]] = HParams
    hparams: ClassVar[Mapping[str, HParam]] = MappingProxyType({})
    _declaration_problems: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        problems = []
        if "hparams" in cls.__dict__:
            problems.append("`hparams` is derived from `Params`: declare the hyper-parameters "
                            "as fields of a pydantic model, `class Params(kdbench.HParams): "
                            "weight: float = kdbench.hparam(0.5, low=0.0, high=1.0)`, and set "
                            "`Params = ...` on the class (docs/writing_a_strategy.md)")
        if isinstance(cls.Params, type) and issubclass(cls.Params, HParams):
            cls.hparams = MappingProxyType(cls.Params.declared())
        else:
            problems.append(f"`Params` must be a subclass of kdbench.HParams, got {cls.Params!r}")
            cls.hparams = MappingProxyType({})
        cls._declaration_problems = tuple(problems)

    @classmethod
    def description(cls) -> str:
        """First line of the class docstring."""
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @classmethod
    def resolve_hparams(cls, overrides: Mapping[str, Any] | None = None) -> dict[str, Scalar]:
        """Defaults merged with ``overrides``, keys sorted.

        Raises:
            pydantic.ValidationError: (a ``ValueError``) on unknown keys and invalid values.
        """
        return cls.Params.resolve(overrides)

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
        problems += cls._declaration_problems
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

"""Hyper-parameters declared by a component: defaults, types and an Optuna search space.

A component lists its hyper-parameters once, as :class:`HParam` objects. The protocol may
override the defaults (values are type-checked and coerced here); the tuner draws from the
declared ranges. There is no central table of hyper-parameters anywhere else.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Scalar = bool | int | float | str


@dataclass(frozen=True)
class HParam:
    """One hyper-parameter.

    Args:
        default: the value used when the protocol gives none; its type is the parameter's type.
        low: lower end of the search range (numeric parameters).
        high: upper end of the search range (numeric parameters).
        log: search on a log scale.
        choices: the allowed values of a categorical parameter (also its search space).
        help: one line on what the parameter does.
        source: where the default comes from (paper, repository, or "kdbench choice").

    Example:
        >>> HParam(0.5, low=0.0, high=1.0, help="weight of the distillation term").coerce("0.25")
        0.25
    """

    default: Scalar
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Scalar, ...] | None = None
    help: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.choices is not None and self.default not in self.choices:
            raise ValueError(f"default {self.default!r} is not one of the choices {self.choices}")
        if (self.low is None) != (self.high is None):
            raise ValueError("give both low and high, or neither")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")

    @property
    def type(self) -> type:
        """The Python type of the parameter (that of its default)."""
        return type(self.default)

    @property
    def tunable(self) -> bool:
        """Whether the parameter has a search space."""
        return self.choices is not None or self.low is not None

    def coerce(self, value: Any) -> Scalar:
        """Return ``value`` converted to the parameter's type, or raise ``ValueError``.

        YAML 1.1 reads ``1e-3`` as a string, so numeric strings are accepted for numbers.
        """
        kind = self.type
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
            out: Scalar = value
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(f"expected an integer, got {value!r}")
            try:
                out = int(value)
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(f"expected a number, got {value!r}")
            try:
                out = float(value)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
        else:
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {value!r}")
            out = value
        if self.choices is not None and out not in self.choices:
            raise ValueError(f"{out!r} is not one of {list(self.choices)}")
        return out

    def suggest(self, trial: Any, name: str) -> Scalar:
        """Draw a value from an Optuna ``trial`` in the declared search space."""
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        if self.low is None or self.high is None:
            return self.default
        if self.type is int:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)


def resolve(declared: Mapping[str, HParam], overrides: Mapping[str, Any]) -> dict[str, Scalar]:
    """Merge ``overrides`` into the declared defaults, type-checked, keys sorted.

    Raises:
        ValueError: naming every unknown key (with the closest declared name) and every value
            of the wrong type.
    """
    problems: list[str] = []
    for key in overrides:
        if key not in declared:
            close = difflib.get_close_matches(key, list(declared), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(declared)) or "none"
            problems.append(f"unknown hyper-parameter {key!r} (declared: {known}){hint}")
    resolved: dict[str, Scalar] = {}
    for key in sorted(declared):
        if key in overrides:
            try:
                resolved[key] = declared[key].coerce(overrides[key])
            except ValueError as exc:
                problems.append(f"hyper-parameter {key!r}: {exc}")
        else:
            resolved[key] = declared[key].default
    if problems:
        raise ValueError("; ".join(problems))
    return resolved


def search_space(declared: Mapping[str, HParam], names: Sequence[str] | None = None) -> list[str]:
    """Names of the tunable parameters (all of them, or those in ``names``), sorted."""
    pool = declared if names is None else {n: declared[n] for n in names}
    return sorted(n for n, p in pool.items() if p.tunable)

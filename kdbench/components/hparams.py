"""Hyper-parameters of a component: a pydantic model, with the Optuna search space beside each
field.

A component declares its hyper-parameters once, as the fields of a :class:`HParams` model
(its ``Params``), like every other option a protocol may set. Each field is a scalar (``bool``,
``int``, ``float``, ``str``, or a ``Literal`` of one of them) with a default, made with
:func:`hparam`, which also holds its search space (``low``/``high``/``log``, or ``choices``),
its help line and the source of its default. The protocol overrides defaults (validated by
pydantic); the tuner draws from the declared ranges (:class:`HParam`, derived from the fields).
There is no central table of hyper-parameters anywhere else.

Example:
    >>> from typing import Literal
    >>> class Params(HParams):
    ...     weight: float = hparam(0.5, low=0.0, high=1.0, help="weight of the KD term")
    ...     loss: Literal["mse", "kl"] = hparam("mse")
    >>> Params.resolve({"weight": "1e-3"})
    {'loss': 'mse', 'weight': 0.001}
    >>> sorted(Params.declared()), Params.declared()["loss"].choices
    (['loss', 'weight'], ('mse', 'kl'))
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

Scalar = bool | int | float | str
_SCALARS = (bool, int, float, str)
_SEARCH = "x-search"  # the key of a field's search space in its JSON schema
_SOURCE = "x-source"


@dataclass(frozen=True)
class HParam:
    """One declared hyper-parameter as the tuner sees it (derived from a :class:`HParams` field).

    Args:
        default: the value used when the protocol gives none.
        type: the parameter's Python type (``bool``, ``int``, ``float`` or ``str``).
        low: lower end of the search range (numeric parameters).
        high: upper end of the search range (numeric parameters).
        log: search on a log scale.
        choices: the values a categorical search draws from.
        help: one line on what the parameter does.
        source: where the default comes from (paper, repository, or "kdbench choice").
    """

    default: Scalar
    type: type
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Scalar, ...] | None = None
    help: str = ""
    source: str = ""

    @property
    def tunable(self) -> bool:
        """Whether the parameter has a search space."""
        return self.choices is not None or self.low is not None

    def suggest(self, trial: Any, name: str) -> Scalar:
        """Draw a value from an Optuna ``trial`` in the declared search space."""
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        if self.low is None or self.high is None:
            return self.default
        if self.type is int:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)


def hparam(
    default: Scalar,
    *,
    low: float | None = None,
    high: float | None = None,
    log: bool = False,
    choices: Sequence[Scalar] | None = None,
    help: str = "",
    source: str = "",
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A field of a :class:`HParams` model: its default, search space, help and source.

    Args:
        default: the value when the protocol gives none.
        low, high: the search range of a numeric parameter (give both or neither). It is where
            the tuner looks, not a limit on what a protocol may set: use ``ge``/``gt``/``le``/
            ``lt`` for values that are invalid.
        log: search the range on a log scale (``low`` must then be positive).
        choices: the values a categorical search draws from; a ``Literal`` field searches its
            values unless given fewer here. ``(False, True)`` makes a ``bool`` tunable.
        help: one line on what the parameter does (the field's description).
        source: where the default comes from.
        ge, gt, le, lt: pydantic's bounds on valid values.
    """
    search = {"low": low, "high": high, "log": log,
              "choices": list(choices) if choices is not None else None}
    return Field(default, description=help or None, ge=ge, gt=gt, le=le, lt=lt,
                 json_schema_extra={_SEARCH: search, _SOURCE: source})


class HParams(BaseModel):
    """The hyper-parameters a protocol may set for a component; subclasses add fields.

    Values are checked strictly (a ``bool`` is not a number, ``2.5`` is not an ``int``), except
    that numeric strings are read as numbers: YAML 1.1 reads ``1e-3`` as a string.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=True)

    _declared: ClassVar[dict[str, HParam]] = {}

    @model_validator(mode="before")
    @classmethod
    def _numeric_strings(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if isinstance(value, str) and field is not None and field.annotation in (int, float):
                with contextlib.suppress(ValueError):  # else pydantic says what was expected
                    out[name] = field.annotation(value)
        return out

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        declared = {name: _declared(cls, name, field) for name, field in cls.model_fields.items()}
        _check_values(cls, {name: p.default for name, p in declared.items()}, "default")
        for name, p in declared.items():
            for choice in p.choices or ():
                _check_values(cls, {name: choice}, "choice")
        defaults = cls().model_dump()  # validated: a float field's default 1 is 1.0
        cls._declared = {name: dataclasses.replace(declared[name], default=defaults[name])
                         for name in sorted(declared)}

    @classmethod
    def declared(cls) -> dict[str, HParam]:
        """Every hyper-parameter, by name (sorted): default, type and search space."""
        return dict(cls._declared)

    @classmethod
    def resolve(cls, overrides: Mapping[str, Any] | None = None) -> dict[str, Scalar]:
        """The defaults merged with ``overrides``, validated, keys sorted.

        Raises:
            pydantic.ValidationError: naming every unknown key and every invalid value.
        """
        values = cls.model_validate(dict(overrides or {})).model_dump()
        return dict(sorted(values.items()))


def _scalar_type(annotation: Any) -> tuple[type | None, tuple[Scalar, ...] | None]:
    """(type, Literal values) of a field's annotation; type ``None`` when it is not a scalar."""
    if annotation in _SCALARS:
        return annotation, None
    if typing.get_origin(annotation) is typing.Literal:
        values = typing.get_args(annotation)
        kinds = {type(v) for v in values}
        if len(kinds) == 1 and next(iter(kinds)) in _SCALARS:
            return kinds.pop(), tuple(values)
    return None, None


def _declared(cls: type[HParams], name: str, field: FieldInfo) -> HParam:
    where = f"{cls.__qualname__}.{name}"
    kind, literal = _scalar_type(field.annotation)
    if kind is None:
        raise TypeError(f"hyper-parameter {where}: its type must be bool, int, float, str or a "
                        f"Literal of one of them, got {field.annotation!r}")
    if field.is_required():
        raise TypeError(f"hyper-parameter {where} needs a default: declare it as "
                        f"`{name}: {kind.__name__} = hparam(<default>, ...)`")
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    search: dict[str, Any] = dict(extra.get(_SEARCH) or {})  # type: ignore[call-overload]
    low, high, log = search.get("low"), search.get("high"), bool(search.get("log"))
    choices = search.get("choices")
    if (low is None) != (high is None):
        raise TypeError(f"hyper-parameter {where}: give both low and high, or neither")
    if low is not None and high is not None:
        if kind not in (int, float):
            raise TypeError(f"hyper-parameter {where}: low/high need an int or float, not "
                            f"{kind.__name__} (give choices for a categorical search)")
        if low > high:
            raise TypeError(f"hyper-parameter {where}: low {low} is above high {high}")
        if log and low <= 0:
            raise TypeError(f"hyper-parameter {where}: a log-scale search needs low > 0, "
                            f"got {low}")
        if choices is not None:
            raise TypeError(f"hyper-parameter {where}: give a range or choices, not both")
    if choices is None and literal is not None and low is None:
        choices = literal
    return HParam(
        default=field.default, type=kind, low=low, high=high, log=log,
        choices=tuple(choices) if choices is not None else None,
        help=field.description or "", source=str(extra.get(_SOURCE) or ""),
    )


def _check_values(cls: type[HParams], values: dict[str, Any], what: str) -> None:
    try:
        cls.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})"
                             for e in exc.errors())
        raise TypeError(f"{cls.__qualname__}: a {what} is not a valid value: {problems}") from None


def search_space(declared: Mapping[str, HParam], names: Sequence[str] | None = None) -> list[str]:
    """Names of the tunable parameters (all of them, or those in ``names``), sorted."""
    pool = declared if names is None else {n: declared[n] for n in names}
    return sorted(n for n, p in pool.items() if p.tunable)

"""Turning pydantic validation errors into one clear line per problem, with YAML lines."""

from __future__ import annotations

import difflib
import reprlib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from kdbench.protocol.yaml_source import Loc, YamlSource

# A message shows a bounded part of a wrong value: a file can nest aliases so that the full
# repr of a few lines would be billions of items long.
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxtuple, _SHOWN.maxdict = 2, 4, 4, 4
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 80, 80, 40


def shown(value: Any) -> str:
    """A repr of ``value`` cut to a readable length (nested containers shown as ``[...]``)."""
    return _SHOWN.repr(value)


def dotted(loc: Loc) -> str:
    """``('strategies', 2, 'hparams')`` -> ``strategies[2].hparams``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found += _models_in(arg)
    return found


def model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (``None`` if not a model)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        models = _models_in(field.annotation)
        model = models[0] if models else None
    return model


def _is_field_part(part: str | int) -> bool:
    # pydantic adds union members and validator names to a loc ("literal['tuned']",
    # "function-after[...]"); they are not keys of the file.
    return isinstance(part, int) or ("[" not in part and "-" not in part)


def describe_errors(
    error: ValidationError,
    root: type[BaseModel],
    source: YamlSource | None,
    prefix: Loc = (),
) -> list[str]:
    """One message per problem: ``strategies[2].hparams (line 14): ...``.

    Args:
        error: the pydantic error.
        root: the model that was validated (to name allowed keys of an unknown one).
        source: the YAML file, for line numbers.
        prefix: where the validated value sits in the file (for nested option models).
    """
    problems: list[str] = []
    seen: set[Loc] = set()
    items = error.errors()
    places = [tuple(p for p in item["loc"] if _is_field_part(p)) for item in items]
    for item, rel in zip(items, places, strict=True):
        loc = (*prefix, *rel)
        kind = item["type"]
        if loc in seen and kind != "extra_forbidden":
            continue  # one line per place: a union reports each member's failure
        if kind == "too_short" and any(len(o) > len(rel) and o[:len(rel)] == rel for o in places):
            continue  # a list left short because its items failed: the items say why
        seen.add(loc)
        if kind == "extra_forbidden":
            model = model_at(root, rel[:-1])
            allowed = sorted(model.model_fields) if model else []
            close = difflib.get_close_matches(str(rel[-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            text = f"unknown key {rel[-1]!r} (allowed here: {', '.join(allowed)}){hint}"
        elif kind == "missing":
            text = "required field is missing"
        elif kind == "value_error":
            text = item["msg"].removeprefix("Value error, ")
        elif kind == "model_type" or kind.endswith("_type") or kind.startswith("literal"):
            text = f"{item['msg']}, got {shown(item['input'])}"
        else:
            text = item["msg"].removeprefix("Value error, ")
        problems.append(located(loc, text, source))
    return problems


def located(loc: Loc, text: str, source: YamlSource | None) -> str:
    """``field (line N): text``."""
    line = source.line_of(loc) if source else None
    where = f"{dotted(loc)} (line {line})" if line else dotted(loc)
    return f"{where}: {text}"

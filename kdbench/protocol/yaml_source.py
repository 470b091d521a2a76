"""Reading a protocol YAML file with the line of every key, for error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

Loc = tuple[str | int, ...]


def _line_map(node: yaml.Node, path: Loc, lines: dict[Loc, int], seen: set[int]) -> None:
    lines[path] = node.start_mark.line + 1
    if id(node) in seen:
        # An alias of a node already walked: walking it again is how nested aliases ("billion
        # laughs") make a few lines take forever.
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if isinstance(key_node, yaml.ScalarNode) and key != "<<":
                if key in first:
                    raise ConstructorError(
                        None, None, f"key {key!r} is given twice (first on line "
                        f"{first[key].start_mark.line + 1}); keep one", key_node.start_mark)
                first[key] = key_node
            lines[(*path, key)] = key_node.start_mark.line + 1
            _line_map(value_node, (*path, key), lines, seen)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), lines, seen)


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """``line 3: not valid YAML (found character '\\t' ...)``: one line, without PyYAML's
    excerpt of the file."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}not valid YAML ({problem})"


class YamlSource:
    """The parsed content of a YAML file and the line where each key or item starts.

    Args:
        path: the file; read with ``yaml.safe_load`` semantics (no arbitrary objects).

    Raises:
        FileNotFoundError, yaml.YAMLError: propagated for the caller to phrase; a key given
            twice in one mapping is a YAML error too (PyYAML would silently keep the last).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        text = path.read_text(encoding="utf-8")
        self.data: Any = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        self.lines: dict[Loc, int] = {}
        if node is not None:
            _line_map(node, (), self.lines, set())

    def line_of(self, loc: Loc) -> int | None:
        """Line of ``loc``, or of its nearest enclosing key when it is absent (a missing field)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None and (end > 0 or not loc):
                return line
        return None

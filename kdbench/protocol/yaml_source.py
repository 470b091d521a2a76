"""Reading a protocol YAML file with the line of every key, for error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]


def _line_map(node: yaml.Node, path: Loc, lines: dict[Loc, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _line_map(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), lines)


class YamlSource:
    """The parsed content of a YAML file and the line where each key or item starts.

    Args:
        path: the file; read with ``yaml.safe_load`` semantics (no arbitrary objects).

    Raises:
        FileNotFoundError, yaml.YAMLError: propagated for the caller to phrase.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        text = path.read_text(encoding="utf-8")
        self.data: Any = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        self.lines: dict[Loc, int] = {}
        if node is not None:
            _line_map(node, (), self.lines)

    def line_of(self, loc: Loc) -> int | None:
        """Line of ``loc``, or of its nearest enclosing key when it is absent (a missing field)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None and (end > 0 or not loc):
                return line
        return None

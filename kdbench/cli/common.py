"""What the CLI commands share: the loaded plugins and the consoles."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from kdbench.registry import Registry

# Piped output (make, CI logs) is not truncated to 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def esc(value: object) -> str:
    """``value`` as text that rich prints as is: a path or message holding ``[...]`` is not
    taken for markup (``[/x]`` would raise, ``[red]`` would vanish)."""
    return escape(str(value))


@dataclass
class State:
    """Options of the root command, and the registry once loaded."""

    plugins_dirs: list[Path] = field(default_factory=list)
    _registry: Registry | None = None

    def registry(self) -> Registry:
        """Load the plugins once per invocation."""
        if self._registry is None:
            from kdbench.plugin_manager import load_plugins

            self._registry = load_plugins(self.plugins_dirs)
        return self._registry


def state(ctx: typer.Context) -> State:
    """The root command's state (a fresh one when a command is invoked on its own)."""
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def print_json(obj: Any) -> None:
    """JSON on stdout, unwrapped (rich would wrap long lines)."""
    typer.echo(json.dumps(obj, indent=2, sort_keys=False))


def key_values(option: str, text: str, example: str = "a=1,b=2") -> dict[str, str]:
    """``a=1,b=2`` -> ``{"a": "1", "b": "2"}`` (a usage error naming ``option`` otherwise)."""
    from kdbench.errors import KdbenchError

    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise KdbenchError(f"{option} {text!r}: expected key=value pairs separated by "
                               f"commas, e.g. {option} {example}")
        out[key.strip()] = value.strip()
    return out

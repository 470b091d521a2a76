"""User-facing errors.

Every error a user can cause (a bad protocol, a bad plugin, a bad input folder) is raised as
a :class:`KdbenchError` whose message is one clear sentence naming the file, field or case and
the fix. The CLI prints the message and exits non-zero, without a traceback.
"""

from __future__ import annotations


class KdbenchError(Exception):
    """An error caused by input or configuration, with a message meant for the user."""

    exit_code: int = 2


class PluginError(KdbenchError):
    """A plugin could not be loaded, or registered something invalid."""


class ProtocolError(KdbenchError):
    """A protocol file is malformed; the message lists every problem found."""

    def __init__(self, source: str, problems: list[str], kind: str = "protocol") -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun} in the {kind}:\n{lines}")

"""Reporters: extra sections of the benchmark report, registered through
``kdbench_register_reporters``.

``kdbench report`` writes its own sections (tables, figures, statistics, benefit vs N) and then
asks every registered reporter for one more section from the same analysis
(:class:`kdbench.report.analysis.Analysis`: the tidy per-case table and every statistic). The
report writes a section's tables as Markdown, LaTeX and CSV and its figures as PNG and SVG, and
shows them on the page after the built-in sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kdbench.components.base import Component


@dataclass
class ReportSection:
    """What a reporter adds to the report.

    Attributes:
        title: the section's heading.
        text: paragraphs of plain text (escaped on the page), e.g. the method and assumptions.
        tables: :class:`kdbench.report.tables.Table` objects (their ``name`` names the files).
        figures: ``(file stem, matplotlib figure, caption)``; the report saves and closes them.
    """

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Any] = field(default_factory=list)
    figures: list[tuple[str, Any, str]] = field(default_factory=list)


class Reporter(Component):
    """A section of the benchmark report (tables, figures, statistics)."""

    def section(self, analysis: Any) -> ReportSection | None:
        """The section for this report's analysis, or ``None`` when it has nothing to show."""
        raise NotImplementedError

"""``index.html`` from jinja2 templates (``templates/``, autoescaped): no HTML is built from
strings in Python."""

from __future__ import annotations

from typing import Any

from kdbench.report.analysis import Analysis


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _p(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.1e}" if value < 1e-4 else f"{value:.4f}"


def _sd(variance: Any, digits: int = 3) -> str:
    """A variance component shown as its standard deviation."""
    if variance is None:
        return "–"
    return f"{float(variance) ** 0.5:.{digits}f}"


def environment() -> Any:
    """The report's jinja2 environment (package templates, autoescape on, strict undefined)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("kdbench.report", "templates"),
                             autoescape=jinja2.select_autoescape(default=True,
                                                                 default_for_string=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["num"] = _fmt
    env.filters["p"] = _p
    env.filters["sd"] = _sd
    return env


def render(context: dict[str, Any], analysis: Analysis, sections: list[dict[str, Any]],
           subset_tables: list[Any], plugin_sections: list[dict[str, Any]]) -> str:
    """The whole page."""
    return environment().get_template("index.html.j2").render(
        **context, settings=analysis.settings, strategies=analysis.strategies,
        sections=sections, subset_tables=subset_tables, plugin_sections=plugin_sections)

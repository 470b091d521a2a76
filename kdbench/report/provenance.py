"""Where a teacher's weights come from: the strategies whose (pretrained) teacher ran with
undeclared training data, flagged in the report.

A pretrained teacher declares the cases it was trained on, and kdbench refuses it when one is
a test case (``kdbench.engine.preflight.check_pretraining``). A teacher run with
``allow_undeclared_training_data: true`` was not checked: the rows of every strategy that uses
it (as its teacher, or as itself) get a footnote (``‡``) in the tables and an entry in
``results.json`` (``undeclared_training_data``). See docs/foundation_teacher.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from kdbench.registry import Registry

#: The hyper-parameter of a teacher that lets it run without declared training cases.
FLAG = "allow_undeclared_training_data"
MARK = "‡"


def undeclared_training_data(protocol: Any, registry: Registry, runs_dir: Path | None = None
                             ) -> dict[str, str]:
    """Strategy label -> footnote, for the strategies whose teacher (or who, as a teacher
    trained as a strategy) may run with undeclared training data.

    Computed from the protocol's plan: a Job of a :class:`kdbench.Teacher` whose resolved
    hyper-parameters set ``allow_undeclared_training_data`` true flags every strategy it
    serves. With ``runs_dir``, a Job whose ``done.json`` says its training cases were declared
    after all (``pretraining.declared``) flags nothing.

    Args:
        protocol: a loaded protocol.
        registry: the loaded plugins.
        runs_dir: the runs folder (optional).

    Returns:
        The footnotes, by label in name order; empty when nothing is flagged.
    """
    from kdbench.components.teacher import Teacher
    from kdbench.engine.job import finished
    from kdbench.plan import build_plan

    plan = build_plan(protocol, registry)
    notes: dict[str, str] = {}
    for job in plan.jobs:
        if job.hparams.get(FLAG) is not True or not any(
                job.component in registry.categories[c]
                and issubclass(registry.categories[c].get(job.component), Teacher)
                for c in ("teachers", "strategies")):
            continue
        if runs_dir is not None:
            done = finished(runs_dir, plan, job)
            if done is not None and (done.record.get("pretraining") or {}).get("declared"):
                continue
        checkpoint = job.hparams.get("checkpoint")
        source = f"checkpoint {checkpoint}, " if checkpoint else ""
        for role in job.roles:
            who = "it" if role.is_strategy else f"its {role.kind} {job.component}"
            notes.setdefault(role.label, (
                f"{MARK} {role.label}: {who} ({source}{FLAG}: true) ran with undeclared "
                "training data: the cases its weights were pretrained on were not checked "
                "against the test set, which they may include"))
    return dict(sorted(notes.items()))


def footnoted(tables: list[Any], notes: dict[str, str]) -> list[Any]:
    """The report's tables with the flagged strategies marked: ``‡`` after a row's label and
    the footnotes appended to the caption of every table that shows a flagged strategy."""
    if not notes:
        return tables
    out = []
    for table in tables:
        shown = {str(v) for v in table.cells.index}
        for level in range(table.cells.columns.nlevels):
            shown |= {str(v) for v in table.cells.columns.get_level_values(level)}
        flagged = [label for label in notes if label in shown]
        if not flagged:
            out.append(table)
            continue
        rename = {label: f"{label} {MARK}" for label in flagged}
        frames = {name: getattr(table, name).rename(index=rename)
                  for name in ("cells", "bold", "marks")}
        caption = f"{table.caption}. " + " ".join(notes[label] for label in flagged)
        out.append(dataclasses.replace(table, caption=caption, **frames))
    return out

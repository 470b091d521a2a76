"""A finished Job's scores: every metric on every test case, region and scored subset, and
their means (the summary metrics its MLflow run records).

Conventions are the metrics' own (docs/metrics.md): scored in the source release's geometry
and label values; a generator Job adds its synthesis scores and ΔDice (the segmenter fed the
completed input minus the same segmenter fed real input).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError
from kdbench.modalities import label, metric_suffix
from kdbench.registry import Registry
from kdbench.types import Job


def summary_metric_key(metric: str, region: str, subset: Iterable[str] | None = None) -> str:
    """The summary metric of a Job's test set: ``test_<metric>_<region>``, and for a Job scored
    on several subsets ``test_<metric>_<region>_<subset>`` (e.g. ``test_dice_ET_t1ce-flair``)."""
    return f"test_{metric}_{region}" + (f"_{metric_suffix(subset)}" if subset else "")


def score_job(result: Any, job: Job, data: Any, registry: Registry, metric_names: Any
              ) -> tuple[Any, dict[str, float]]:
    """The per-case table of a finished Job on the test set, and its summary means.

    Args:
        result: the Job's outputs (:class:`kdbench.engine.job.JobResult`: its predictions per
            scored subset and, for a generator, its synthesis table).
        job: the Job.
        data: the protocol's prepared dataset and splits (``ProtocolData``).
        registry: the loaded plugins (the metric classes).
        metric_names: the protocol's ``metrics``.

    Returns:
        The table (subset, case, region, metric, value) and its means per subset, region and
        metric under :func:`summary_metric_key`.
    """
    import pandas as pd

    from kdbench.metrics.scoring import metric_classes, score_files

    metrics = metric_classes(registry, metric_names)
    convention = data.dataset.marker["label_convention"]
    tables = []
    for subset in job.modalities.evaluate:
        folder = result.predictions(subset)
        pairs = {case: (folder / f"{case}.nii.gz", data.dataset.reference(case))
                 for case in data.splits.test}
        table = score_files(pairs, metrics, convention)
        table.insert(0, "subset", label(subset))
        tables.append(table)
    if result.synthesis is not None:
        available = label(job.modalities.evaluate[0])
        synthesis = pd.read_csv(result.synthesis)
        synthesis.insert(0, "subset", available)
        tables += [synthesis, _delta_dice(tables[0], result.path.parent / job.depends_on[
            "teacher"] / "per_case.csv", available)]
    per_case = pd.concat(tables, ignore_index=True)
    summary = {}
    several = len(job.modalities.evaluate) > 1
    subsets = {label(s): s for s in job.modalities.evaluate}
    for (subset, region, metric), values in per_case.groupby(["subset", "region", "metric"])[
            "value"]:
        key = summary_metric_key(metric, region, subsets[subset] if several else None)
        summary[key] = float(values.mean())
    return per_case, summary


def _delta_dice(completed: Any, teacher_table: Path, subset: str) -> Any:
    """ΔDice per case and region: the segmenter fed the generator-completed input minus the
    same segmenter fed real input (its own Job's per-case table)."""
    import pandas as pd

    if not teacher_table.exists():
        raise KdbenchError(f"{teacher_table} is missing: the generator's ΔDice needs its "
                           "segmenter Job's per-case table; rerun that Job")
    real = pd.read_csv(teacher_table)
    real = real[real["metric"] == "dice"].set_index(["case", "region"])["value"]
    synth = completed[completed["metric"] == "dice"].set_index(["case", "region"])["value"]
    delta = (synth - real.reindex(synth.index)).rename("value").reset_index()
    delta.insert(0, "subset", subset)
    delta.insert(3, "metric", "delta_dice")
    return delta



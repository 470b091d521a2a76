"""Scoring predictions against references: per case, per folder of files, and summaries.

The tables are long ("tidy"): one row per case, region and metric, with columns ``case``,
``region``, ``metric``, ``value``. A metric is any registered :class:`kdbench.Metric` that also
declares ``unit``, ``higher_is_better``, ``definition`` and ``compute(pred, ref, spacing)`` (the
built-ins are in ``kdbench_plugins.brats_metrics``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kdbench.errors import KdbenchError
from kdbench.metrics.regions import check_convention, region_masks, to_canonical

if TYPE_CHECKING:
    import pandas as pd

    from kdbench.components import Metric
    from kdbench.registry import CategoryRegistry, Registry

#: Columns of a per-case table.
COLUMNS: tuple[str, ...] = ("case", "region", "metric", "value")
#: Attributes a metric class needs beyond ``kdbench.Metric``'s.
REQUIRED: tuple[str, ...] = ("unit", "higher_is_better", "definition", "compute")
#: Affine entries may differ by this much (mm) between prediction and reference: tools that
#: round-trip a header through float32 (nnU-Net, SimpleITK) change the last digits.
AFFINE_ATOL = 1e-3

MetricLike = Any  # a Metric subclass or an instance of one (duck-typed, see REQUIRED)


def check_metric(metric: MetricLike) -> None:
    """Raise :class:`KdbenchError` if ``metric`` lacks what scoring needs (see ``REQUIRED``;
    a :class:`kdbench.Metric` subclass is held to its declaration, as at registration)."""
    from kdbench.components import Metric

    name = getattr(metric, "name", repr(metric))
    cls = metric if isinstance(metric, type) else type(metric)
    missing = [a for a in REQUIRED if not hasattr(metric, a)]
    problems = cls.validate_declaration() if issubclass(cls, Metric) else []
    if missing:
        problems.insert(0, f"it lacks {', '.join(missing)}")
    if problems:
        raise KdbenchError(f"metric {name!r} cannot score cases: {'; '.join(problems)} "
                           "(see docs/metrics.md, 'Adding a metric')")


def metric_classes(
    registry: Registry | CategoryRegistry, names: Sequence[str] | str | None = None
) -> list[type[Metric]]:
    """The registered metric classes for ``names``, in that order.

    Args:
        registry: the loaded :class:`~kdbench.registry.Registry`, or its ``metrics`` category.
        names: metric names (a list, or one comma-separated string such as ``"dice,hd95"``);
            ``None`` or empty for every registered metric, sorted by name.

    Returns:
        The classes, without duplicates.

    Raises:
        KdbenchError: an unknown name (the registered ones are listed), or a metric that
            cannot score cases.
    """
    metrics: CategoryRegistry = getattr(registry, "metrics", registry)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    chosen = list(dict.fromkeys(names or metrics.names()))
    classes = []
    for name in chosen:
        if name not in metrics:
            raise KdbenchError(metrics.unknown_message(name))
        cls = metrics.get(name)
        check_metric(cls)
        classes.append(cls)
    return classes


def _instances(metrics: Sequence[MetricLike]) -> list[Any]:
    out = []
    for metric in metrics:
        check_metric(metric)
        out.append(metric() if isinstance(metric, type) else metric)
    return out


def describe_metrics(metrics: Sequence[MetricLike]) -> dict[str, dict[str, Any]]:
    """Name -> ``{"version", "unit", "higher_is_better", "definition"}``, to label tables."""
    return {
        m.name: {"version": m.version, "unit": m.unit, "higher_is_better": m.higher_is_better,
                 "definition": m.definition}
        for m in metrics
    }


def score_case(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    spacing: Sequence[float],
    metrics: Sequence[MetricLike],
    convention: str,
    *,
    pred_convention: str | None = None,
) -> list[dict[str, Any]]:
    """Every metric on every region of one case.

    Args:
        pred_labels: predicted label map in ``convention`` (or ``pred_convention``).
        ref_labels: reference label map, same shape.
        spacing: voxel size in mm along each axis.
        metrics: metric classes or instances (see :func:`metric_classes`).
        convention: label convention of the files, a key of ``LABEL_MAPS``.
        pred_convention: the prediction's convention when it differs (e.g. ``"canonical"`` for
            nnU-Net's raw output scored against a ``"brats2021"`` reference).

    Returns:
        Rows ``{"region", "metric", "value"}``, regions in WT, TC, ET order, metrics in the
        given order.

    Raises:
        KdbenchError: shapes differ, or a label value outside its convention.
    """
    if pred_labels.shape != ref_labels.shape:
        raise KdbenchError(f"prediction shape {pred_labels.shape} differs from reference shape "
                           f"{ref_labels.shape}")
    if len(spacing) != ref_labels.ndim:
        raise KdbenchError(f"spacing {tuple(spacing)} does not fit a {ref_labels.ndim}-D image")
    instances = _instances(metrics)
    pred_regions = region_masks(to_canonical(pred_labels, pred_convention or convention))
    ref_regions = region_masks(to_canonical(ref_labels, convention))
    spacing = tuple(float(s) for s in spacing)
    rows = []
    # Region outer, metric inner: the HD95 variants share one region's surface distances.
    for region, ref in ref_regions.items():
        pred = pred_regions[region]
        for metric in instances:
            value = float(metric.compute(pred, ref, spacing))
            rows.append({"region": region, "metric": metric.name, "value": value})
    return rows


def _load(path: Path) -> Any:
    import nibabel as nib

    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise KdbenchError(f"cannot read {path} as NIfTI: {exc}") from exc


def _labels(image: Any, path: Path) -> np.ndarray:
    try:
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # a truncated .nii.gz raises EOFError, which click turns into Abort
        raise KdbenchError(f"cannot read {path} as NIfTI: {type(exc).__name__}: {exc}; "
                           "re-export the file") from None
    if data.ndim == 4 and data.shape[-1] == 1:  # some writers keep a singleton 4th axis
        data = data[..., 0]
    if data.ndim != 3:
        raise KdbenchError(f"{path} has shape {data.shape}; a label map must be 3-D")
    if not np.issubdtype(data.dtype, np.integer):
        rounded = np.rint(data)
        if not np.array_equal(rounded, data):
            raise KdbenchError(f"{path} holds non-integer values; it is not a label map")
        data = rounded
    return data.astype(np.int16, copy=False)


def score_pair(
    case: str,
    pred_path: Path | None,
    ref_path: Path,
    metrics: Sequence[MetricLike],
    convention: str,
    pred_convention: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`score_case` on two NIfTI files; a missing prediction (``None``) scores as empty.

    The spacing is the reference header's zooms. Prediction and reference must have the same
    shape and affine (up to :data:`AFFINE_ATOL`): a resampled or re-oriented prediction would
    otherwise be scored voxel by voxel against the wrong anatomy.

    Returns:
        Rows ``{"case", "region", "metric", "value"}``.

    Raises:
        KdbenchError: unreadable file, shape or affine mismatch, unknown label value; the
            message names the case and the files.
    """
    ref_image = _load(ref_path)
    ref = _labels(ref_image, ref_path)
    if pred_path is None:
        pred = np.zeros_like(ref)
        pred_convention = convention
    else:
        pred_image = _load(pred_path)
        pred = _labels(pred_image, pred_path)
        if pred.shape != ref.shape:
            raise KdbenchError(f"case {case}: prediction {pred_path} has shape {pred.shape} but "
                               f"reference {ref_path} has {ref.shape}; predict on the "
                               "reference grid")
        if not np.allclose(pred_image.affine, ref_image.affine, rtol=0, atol=AFFINE_ATOL):
            raise KdbenchError(
                f"case {case}: prediction {pred_path} and reference {ref_path} have different "
                f"affines (orientation, origin or spacing):\n{pred_image.affine}\nvs\n"
                f"{ref_image.affine}\nresample the prediction onto the reference grid"
            )
    spacing = tuple(float(z) for z in ref_image.header.get_zooms()[:3])
    try:
        rows = score_case(pred, ref, spacing, metrics, convention,
                          pred_convention=pred_convention)
    except KdbenchError as exc:
        raise KdbenchError(f"case {case} ({pred_path} vs {ref_path}): {exc}") from exc
    return [{"case": case, **row} for row in rows]


def score_files(
    pairs: Mapping[str, tuple[Path | str | None, Path | str]],
    metrics: Sequence[MetricLike],
    convention: str,
    workers: int = 1,
    *,
    pred_convention: str | None = None,
) -> pd.DataFrame:
    """Score prediction files against reference files.

    Args:
        pairs: case id -> ``(prediction path, reference path)``; a prediction path of ``None``
            scores the case as an empty prediction (the BraTS convention for a missing one).
        metrics: metric classes or instances.
        convention: label convention of the files (see :func:`score_case`).
        workers: processes scoring cases in parallel (1: in this process).
        pred_convention: the predictions' convention when it differs from ``convention``.

    Returns:
        The per-case table (columns :data:`COLUMNS`), cases in the order of ``pairs``.

    Raises:
        KdbenchError: see :func:`score_pair`; also a prediction or reference file that does
            not exist.
    """
    import pandas as pd

    check_convention(convention)
    if pred_convention is not None:
        check_convention(pred_convention)
    metrics = list(metrics)
    for metric in metrics:
        check_metric(metric)
    jobs = []
    for case, (pred_path, ref_path) in pairs.items():
        pred_path = None if pred_path is None else Path(pred_path)
        ref_path = Path(ref_path)
        for kind, path in (("prediction", pred_path), ("reference", ref_path)):
            if path is not None and not path.is_file():
                raise KdbenchError(f"case {case}: {kind} file {path} does not exist")
        jobs.append((case, pred_path, ref_path, metrics, convention, pred_convention))
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            results = list(pool.map(score_pair, *zip(*jobs, strict=True)))
    else:
        results = [score_pair(*job) for job in jobs]
    rows = [row for result in results for row in result]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["value"] = table["value"].astype(float)
    return table


def summarize(df: pd.DataFrame, by: Sequence[str] = ("region", "metric")) -> pd.DataFrame:
    """Mean, standard deviation (n - 1), median and count of ``value`` per group.

    Args:
        df: a per-case table (see :func:`score_files`), possibly with extra columns such as
            ``subset``.
        by: the grouping columns; groups keep their order of first appearance (WT, TC, ET).

    Returns:
        Columns ``*by, mean, std, median, n`` (``std`` is NaN for a single case).
    """
    grouped = df.groupby(list(by), sort=False)["value"]
    summary = grouped.agg(["mean", "std", "median", "count"]).reset_index()
    return summary.rename(columns={"count": "n"})

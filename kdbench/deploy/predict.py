"""``kdbench predict``: segment new cases with an exported model, from whatever sequences
each case has.

Cases are read in any naming kdbench ingests (a BraTS 2018-2023 release, an nnU-Net raw
dataset) or as one folder per case with files named by modality (``<case>/t1ce.nii.gz``,
``<case>/flair.nii.gz``; BraTS 2023's ``t1c``, ``t2f``, ``t1n``, ``t2w`` too). Each case is
predicted from the largest subset of its sequences that the model accepts; a case that has
none is refused with one message naming it and the file it lacks, and the others still run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kdbench.cases import LABEL_MAPS, Problem, is_safe_case_id
from kdbench.components.requests import ExportedPredictRequest
from kdbench.deploy.model_folder import ExportedModel
from kdbench.deploy.route import Choice, Router
from kdbench.errors import KdbenchError
from kdbench.modalities import MODALITIES, label
from kdbench.registry import Registry

NIFTI: tuple[str, ...] = (".nii.gz", ".nii")
#: The per-case record of a routed prediction, beside the outputs.
ROUTING = "routing.csv"
#: File stems (lower case) of the per-modality folder layout.
MODALITY_STEMS: dict[str, str] = {
    "t1": "t1", "t1n": "t1", "t1ce": "t1ce", "t1c": "t1ce", "t1gd": "t1ce",
    "t2": "t2", "t2w": "t2", "flair": "flair", "t2f": "flair"}


@dataclass(frozen=True)
class InputCase:
    """A case to predict: its files by modality, and where a missing one was expected."""

    case_id: str
    images: Mapping[str, Path]
    expected: Mapping[str, Path] = field(default_factory=dict)


@dataclass
class Prediction:
    """What ``kdbench predict`` did: each case's output and the subset it was predicted
    from, and each refused case with its message."""

    written: dict[str, tuple[tuple[str, ...], Path]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    routes: dict[str, Choice] = field(default_factory=dict)


def _stem(path: Path) -> str | None:
    for ext in NIFTI:
        if path.name.lower().endswith(ext):
            return path.name[: -len(ext)]
    return None


def _modality_folders(root: Path) -> list[InputCase] | None:
    """One folder per case, files named by modality; ``None`` when no folder is."""
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            stem = _stem(path)
            if stem is None or not path.is_file():
                continue
            modality = MODALITY_STEMS.get(stem.lower())
            if modality is not None:
                images.setdefault(modality, path)
        if images:
            cases.append(InputCase(folder.name, images,
                                   {m: folder / f"{m}.nii.gz" for m in MODALITIES}))
    return cases or None


def read_cases(root: Path, registry: Registry) -> tuple[list[InputCase], list[Problem]]:
    """The cases under ``root`` and the problems that refuse some of them (unsafe or duplicate
    ids). A missing image is not a problem here: the model decides what a case needs.

    Raises:
        KdbenchError: ``root`` is not a folder, or holds no case in any known layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise KdbenchError(f"input folder {root} does not exist or is not a folder")
    for name in registry.datasets.names():
        cls = registry.datasets.get(name)
        if cls.synthetic or cls.detect(root) is None:
            continue
        release = cls().read(root, cls.validate_options({}))
        missing_file = [p for p in release.problems if p.file is not None and not p.file.exists()]
        expected: dict[str, dict[str, Path]] = {}
        for p in missing_file:
            modality = next((m for m in MODALITIES if f"missing {m} image" in p.problem), None)
            if p.case is not None and modality is not None:
                expected.setdefault(p.case, {})[modality] = p.file
        others = [p for p in release.problems if p not in missing_file]
        cases = [InputCase(c.case_id, dict(c.images), expected.get(c.case_id, {}))
                 for c in release.cases if c.images]
        if cases:
            return cases, others
    found = _modality_folders(root)
    if found is None:
        raise KdbenchError(
            f"no case found in {root}: give a BraTS release (<case>/<case>_t1ce.nii.gz, "
            "<case>/<case>-t1c.nii.gz), an nnU-Net raw dataset, or one folder per case with "
            "files named by modality (<case>/t1ce.nii.gz)")
    bad = [Problem(c.case_id, root / c.case_id, f"case id {c.case_id!r} is not safe as a file "
                   "name (ASCII letters, digits, '_', '.', '-' only)", "rename the folder")
           for c in found if not is_safe_case_id(c.case_id)]
    return found, bad


def choose_subset(images: Mapping[str, Path], accepts: list[tuple[str, ...]]
                  ) -> tuple[str, ...] | None:
    """The largest subset the model accepts that the case has (the first in the model's
    order among equals), or ``None``."""
    fits = [s for s in accepts if set(s) <= set(images)]
    return max(fits, key=len) if fits else None


def predict_cases(models: Sequence[ExportedModel], registry: Registry, input_dir: Path,
                  output_dir: Path, *, route: Router | None = None, device: str = "cpu",
                  labels: str | None = None, overwrite: bool = False,
                  progress: Callable[[str], None] | None = None) -> Prediction:
    """Predict every case under ``input_dir`` that has a subset a model accepts: with one model,
    its largest such subset; with ``route``, the model and subset the report ranks best
    (recorded in ``routing.csv`` beside the outputs).

    Raises:
        KdbenchError: several models without a route, no case at all, an unknown label
            convention, or outputs that exist without ``overwrite`` (then nothing is written).
    """
    if len(models) > 1 and route is None:
        raise KdbenchError("several --model folders need --route REPORT (a report folder or its "
                           "results.json) to choose between them per case")
    conventions = {m.manifest["label_convention"] for m in models}
    if labels is None and len(conventions) > 1:
        raise KdbenchError(f"the models were trained on labels {', '.join(sorted(conventions))}; "
                           "choose the ones to write with --labels")
    convention = labels or next(iter(conventions))
    if convention not in LABEL_MAPS or convention == "canonical":
        raise KdbenchError(f"--labels {convention!r}: choose brats2021 (labels 1, 2, 4) or "
                           "brats2023 (labels 1, 2, 3)")
    cases, problems = read_cases(input_dir, registry)
    result = Prediction()
    for p in problems:
        if p.case is None:
            raise KdbenchError(p.line())
        result.refused[p.case] = p.line()
    accepts = [s for m in models for s in m.accepts]
    groups: dict[tuple[int, tuple[str, ...]], dict[str, dict[str, Path]]] = {}
    for case in cases:
        if case.case_id in result.refused:
            continue
        if route is not None:
            choice = route.choose(case.images)
        else:
            subset = choose_subset(case.images, models[0].accepts)
            choice = None if subset is None else Choice(0, subset, "", 0, float("nan"))
        if choice is None:
            need = min(accepts, key=len)
            lacking = [m for m in need if m not in case.images]
            files = ", ".join(str(case.expected.get(m, f"a {m} image")) for m in lacking)
            options = " or ".join(dict.fromkeys(label(s) for s in accepts))
            result.refused[case.case_id] = (
                f"{case.case_id}: the model{'s need' if len(models) > 1 else ' needs'} "
                f"{options}; the case has "
                f"{label(tuple(m for m in MODALITIES if m in case.images))}, missing {files}; "
                "add the file or predict it with a model of its sequences")
            continue
        result.routes[case.case_id] = choice
        groups.setdefault((choice.model, choice.subset), {})[case.case_id] = {
            m: case.images[m] for m in choice.subset}
    output_dir = Path(output_dir)
    existing = sorted(c for g in groups.values() for c in g
                      if any((output_dir / f"{c}{e}").exists() for e in NIFTI))
    if existing and not overwrite:
        raise KdbenchError(f"{output_dir} already holds predictions of {len(existing)} of these "
                           f"cases ({', '.join(existing[:3])}{', ...' if len(existing) > 3 else ''}"
                           "); add --overwrite or choose another --output")
    trees = {}
    for (index, subset), files in sorted(groups.items()):
        model = models[index]
        backbone = registry.backbones.get(model.manifest["backbone"]["name"])()
        if index not in trees:
            trees[index] = model.trained(registry)
        written = backbone.predict_exported(ExportedPredictRequest(
            folder=model.backbone_folder, trained=trees[index], cases=files, available=subset,
            out_dir=output_dir, label_convention=convention, device=device,
            progress=progress))
        for case_id, path in written.items():
            result.written[case_id] = (subset, path)
    if route is not None:
        _write_routing(output_dir / ROUTING, result, models, route)
    return result


def _write_routing(path: Path, result: Prediction, models: Sequence[ExportedModel],
                   route: Router) -> None:
    """``routing.csv``: per case the model chosen, its strategy and N, the subset it read and
    the report's mean that chose it."""
    import csv

    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["case", "model", "strategy", "N", "subset", "region", "metric",
                      "report_mean"])
        for case_id in sorted(result.written):
            choice = result.routes[case_id]
            out.writerow([case_id, str(models[choice.model].folder), choice.strategy, choice.n,
                          label(choice.subset), route.region, route.metric,
                          f"{choice.score:.6f}"])

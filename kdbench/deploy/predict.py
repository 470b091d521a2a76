"""``kdbench predict``: segment new cases with an exported model, from whatever sequences
each case has.

Cases are read in any naming kdbench ingests (a BraTS 2018-2023 release, an nnU-Net raw
dataset) or as one folder per case with files named by modality (``<case>/t1ce.nii.gz``,
``<case>/flair.nii.gz``; BraTS 2023's ``t1c``, ``t2f``, ``t1n``, ``t2w`` too). Each case is
predicted from the largest subset of its sequences that the model accepts; a case that has
none is refused with one message naming it and the file it lacks, and the others still run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kdbench.cases import LABEL_MAPS, Problem, is_safe_case_id
from kdbench.components.requests import ExportedPredictRequest
from kdbench.deploy.model_folder import ExportedModel
from kdbench.errors import KdbenchError
from kdbench.modalities import MODALITIES, label
from kdbench.registry import Registry

NIFTI: tuple[str, ...] = (".nii.gz", ".nii")
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


def predict_cases(model: ExportedModel, registry: Registry, input_dir: Path, output_dir: Path,
                  *, device: str = "cpu", labels: str | None = None, overwrite: bool = False,
                  progress: Callable[[str], None] | None = None) -> Prediction:
    """Predict every case under ``input_dir`` that has a subset the model accepts.

    Raises:
        KdbenchError: no case at all, an unknown label convention, or outputs that exist
            without ``overwrite`` (then nothing is written).
    """
    convention = labels or model.manifest["label_convention"]
    if convention not in LABEL_MAPS or convention == "canonical":
        raise KdbenchError(f"--labels {convention!r}: choose brats2021 (labels 1, 2, 4) or "
                           "brats2023 (labels 1, 2, 3)")
    cases, problems = read_cases(input_dir, registry)
    result = Prediction()
    for p in problems:
        if p.case is not None:
            result.refused[p.case] = p.line()
        else:
            raise KdbenchError(p.line())
    accepts = model.accepts
    groups: dict[tuple[str, ...], dict[str, dict[str, Path]]] = {}
    for case in cases:
        if case.case_id in result.refused:
            continue
        subset = choose_subset(case.images, accepts)
        if subset is None:
            need = min(accepts, key=len)
            lacking = [m for m in need if m not in case.images]
            files = ", ".join(str(case.expected.get(m, f"a {m} image")) for m in lacking)
            result.refused[case.case_id] = (
                f"{case.case_id}: the model needs {' or '.join(label(s) for s in accepts)}; "
                f"the case has {label(tuple(m for m in MODALITIES if m in case.images))}, "
                f"missing {files}; add the file or predict it with a model of its sequences")
            continue
        groups.setdefault(subset, {})[case.case_id] = {m: case.images[m] for m in subset}
    output_dir = Path(output_dir)
    existing = sorted(c for g in groups.values() for c in g
                      if any((output_dir / f"{c}{e}").exists() for e in NIFTI))
    if existing and not overwrite:
        raise KdbenchError(f"{output_dir} already holds predictions of {len(existing)} of these "
                           f"cases ({', '.join(existing[:3])}{', ...' if len(existing) > 3 else ''}"
                           "); add --overwrite or choose another --output")
    backbone = registry.backbones.get(model.manifest["backbone"]["name"])()
    trained = model.trained(registry)
    for subset, files in sorted(groups.items()):
        written = backbone.predict_exported(ExportedPredictRequest(
            folder=model.backbone_folder, trained=trained, cases=files, available=subset,
            out_dir=output_dir, label_convention=convention, device=device,
            progress=progress))
        for case_id, path in written.items():
            result.written[case_id] = (subset, path)
    return result

"""Assembling cases and writing a phantom release: :func:`generate_phantom`.

Case ``k`` draws from ``numpy.random.SeedSequence([seed, k])`` alone (split into anatomy,
tumour and contrast streams), so it is the same whatever the number of cases, and the same
options always give byte-identical files.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kdbench import KdbenchError
from kdbench_plugins.phantom import writer
from kdbench_plugins.phantom.anatomy import (
    Tissues,
    deform,
    mni_paths,
    mni_tissues,
    procedural_tissues,
)
from kdbench_plugins.phantom.annotation import STREAM, LabelNoise, annotate
from kdbench_plugins.phantom.contrast import render
from kdbench_plugins.phantom.tumour import TumourSpec, make_tumour

#: Bump when a change alters the generated files (it is also the dataset's version).
PHANTOM_VERSION = "1"

Anatomy = Literal["auto", "mni", "procedural"]


def resolve_anatomy(anatomy: Anatomy) -> str:
    """The anatomy source that ``anatomy`` selects on this machine.

    Args:
        anatomy: ``"auto"`` (MNI when nilearn's template files are present, else
            procedural), ``"mni"`` or ``"procedural"``.

    Returns:
        ``"mni"`` or ``"procedural"``.

    Raises:
        KdbenchError: ``"mni"`` was asked for and the template files are missing.
    """
    if anatomy == "procedural":
        return "procedural"
    if mni_paths() is not None:
        return "mni"
    if anatomy == "mni":
        raise KdbenchError(
            "phantom anatomy 'mni' needs the MNI ICBM152 template shipped with nilearn, which "
            "is not installed here; install nilearn (pip install nilearn) or set the dataset "
            "option anatomy: procedural"
        )
    return "procedural"


def template(source: str, shape: tuple[int, int, int]) -> Tissues:
    """The undeformed tissue template of ``source`` at ``shape`` (cached).

    Args:
        source: ``"mni"`` or ``"procedural"``.
        shape: grid shape.

    Returns:
        The template's tissue maps.
    """
    return mni_tissues(shape) if source == "mni" else procedural_tissues(shape)


def case_labels(
    index: int, seed: int, shape: tuple[int, int, int], source: str
) -> tuple[Tissues, np.ndarray, TumourSpec, np.random.Generator]:
    """The anatomy and tumour of one case, and the generator its images draw from.

    Args:
        index: the case number.
        seed: the dataset seed.
        shape: grid shape.
        source: anatomy source, ``"mni"`` or ``"procedural"``.

    Returns:
        ``(tissues, seg, tumour, contrast_rng)``.
    """
    streams = np.random.SeedSequence([seed, index]).spawn(3)
    anat_rng, tumour_rng, contrast_rng = (np.random.default_rng(s) for s in streams)
    tissues = deform(template(source, shape), anat_rng)
    seg, spec = make_tumour(tissues, tumour_rng)
    return tissues, seg, spec, contrast_rng


def synthesise_case(
    index: int, seed: int, shape: tuple[int, int, int], source: str,
    label_noise: LabelNoise | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, TumourSpec]:
    """Make one case in memory.

    Args:
        index: the case number.
        seed: the dataset seed.
        shape: grid shape.
        source: anatomy source, ``"mni"`` or ``"procedural"``.
        label_noise: the rater model, or ``None`` for exact labels.

    Returns:
        ``(arrays, affine, tumour)``: int16 ``t1, t1ce, t2, flair`` and uint8 ``seg`` arrays
        (with noise: ``seg`` the annotation, ``seg_reference`` the true labels), their shared
        affine, and the tumour's parameters.
    """
    tissues, seg, spec, contrast_rng = case_labels(index, seed, shape, source)
    images, _ = render(tissues, seg, spec.low_grade, contrast_rng)
    arrays = {**images, "seg": seg}
    if label_noise is not None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, index, STREAM]))
        arrays["seg"] = annotate(seg, tissues.spacing, label_noise, rng)
        arrays[writer.REFERENCE] = seg
    return arrays, writer.brats_affine(shape, tissues.spacing), spec


def _identity(cases: int, shape: tuple[int, int, int], seed: int, anatomy: str, used: str,
              label_noise: LabelNoise | None = None) -> dict:
    """What makes two phantoms the same: generator version and options (``label_noise`` only
    when set: a phantom without it is the same as before the option existed)."""
    options: dict[str, Any] = {"cases": cases, "shape": list(shape), "seed": seed,
                               "anatomy": anatomy}
    if label_noise is not None:
        options["label_noise"] = asdict(label_noise)
    return {
        "generator": "kdbench phantom",
        "version": PHANTOM_VERSION,
        "options": options,
        "anatomy_used": used,
    }


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A short description of how two identities differ, e.g. ``seed 0 -> 1``."""
    flat_old = {**old.get("options", {}), **{k: v for k, v in old.items() if k != "options"}}
    flat_new = {**new["options"], **{k: v for k, v in new.items() if k != "options"}}
    parts = [
        f"{k} {flat_old.get(k)!r} -> {flat_new[k]!r}"
        for k in flat_new
        if flat_old.get(k) != flat_new[k]
    ]
    return ", ".join(parts) or "unreadable manifest"


def generate_phantom(
    dest: Path | str,
    cases: int = 24,
    shape: tuple[int, int, int] = (64, 64, 64),
    seed: int = 0,
    anatomy: Anatomy = "auto",
    label_noise: LabelNoise | None = None,
) -> Path:
    """Write a synthetic BraTS 2021-layout release under ``dest`` (idempotent).

    ``dest/BraTS2021_NNNNN/BraTS2021_NNNNN_{t1,t1ce,t2,flair,seg}.nii.gz`` plus
    ``dest/phantom.json`` (options, anatomy used, spacing and each file's sha256). When
    ``dest`` already holds the same phantom it is returned untouched; an interrupted run with
    the same options is resumed.

    Args:
        dest: the release folder to create (or reuse).
        cases: number of cases.
        shape: grid shape; each side at least 24.
        seed: dataset seed; case ``k`` depends only on ``(seed, k)``.
        anatomy: ``"auto"``, ``"mni"`` or ``"procedural"`` (see :func:`resolve_anatomy`).
        label_noise: the rater model (:mod:`~kdbench_plugins.phantom.annotation`): each case's
            ``seg`` is then a rater's annotation and ``seg_reference`` its true labels; ``None``
            (default): exact labels, the files of a phantom without the option.

    Returns:
        The release folder ``dest``.

    Raises:
        KdbenchError: ``dest`` holds other files or a phantom made with other options, or the
            MNI template was required and is missing.
    """
    dest = Path(dest)
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    used = resolve_anatomy(anatomy)
    identity = _identity(cases, shape, seed, anatomy, used, label_noise)
    noisy = label_noise is not None
    fix = "choose another output folder (--out) or delete it"
    if dest.exists() and not dest.is_dir():
        raise KdbenchError(f"phantom output {dest} is a file, not a folder; {fix}")
    ids = [writer.case_id(i) for i in range(cases)]

    manifest = writer.read_json(dest / writer.MANIFEST)
    partial = writer.read_json(dest / writer.PARTIAL)
    if manifest is not None:
        old = {k: manifest.get(k) for k in identity}
        if old != identity:
            raise KdbenchError(
                f"{dest} already holds a phantom made with other options "
                f"({_differences(manifest, identity)}); {fix}"
            )
        if all(writer.is_complete_case(dest, c, noisy) for c in ids):
            return dest
    elif partial is not None:
        if partial != identity:
            raise KdbenchError(
                f"{dest} holds an unfinished phantom made with other options "
                f"({_differences(partial, identity)}); {fix}"
            )
    elif dest.exists() and any(dest.iterdir()):
        raise KdbenchError(f"phantom output {dest} is not empty and holds no phantom; {fix}")

    dest.mkdir(parents=True, exist_ok=True)
    writer.write_json(dest / writer.PARTIAL, identity)
    writer.remove_stale_tmp(dest)
    files: dict[str, str] = {}
    tumours: dict[str, dict] = {}
    spacing = template(used, shape).spacing
    for index, cid in enumerate(ids):
        if writer.is_complete_case(dest, cid, noisy):
            # Left by an interrupted run with these options: keep it, re-derive its record.
            files.update(writer.hash_case(dest, cid, noisy))
            tumours[cid] = asdict(case_labels(index, seed, shape, used)[2])
            continue
        arrays, affine, spec = synthesise_case(index, seed, shape, used, label_noise)
        files.update(writer.write_case(dest, cid, arrays, affine))
        tumours[cid] = asdict(spec)
    manifest = {
        **identity,
        "spacing_mm": spacing,
        "affine": writer.brats_affine(shape, spacing).tolist(),
        "image_dtype": "int16",
        "labels": {"0": "background", "1": "NCR/NET", "2": "edema", "4": "enhancing tumour"},
        **({"annotation": {"seg": "a rater's annotation (training and validation read it)",
                           writer.REFERENCE: "the true labels (the test set is scored on "
                                             "them)"}} if noisy else {}),
        "cases": ids,
        "files": files,
        "tumours": tumours,
    }
    writer.write_json(dest / writer.MANIFEST, manifest)
    (dest / writer.PARTIAL).unlink(missing_ok=True)
    return dest

"""An exported model folder: its manifest, its checksums, and the model tree it describes.

A folder (or the zip of one) written by ``kdbench export`` holds:

- ``kdbench_model.json``, the manifest: what loading needs (the backbone, the model tree of
  strategy / teacher / generator nodes with their versions, hyper-parameters and modalities,
  the subsets the model accepts, the label convention);
- ``model_card.json`` and ``MODEL_CARD.md``: where the model comes from and how it scored;
- the backbone's files (weights, plans);
- ``SHA256SUMS``: the sha256 of every other file, in ``sha256sum`` format.

Loading trusts nothing in the folder: every file is checked against ``SHA256SUMS`` before
anything is read, the weights are tensors only (safetensors), and the code that rebuilds the
networks is the installed plugins' (named in the manifest, never loaded from the folder).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.components.requests import TrainedModel
from kdbench.errors import KdbenchError
from kdbench.registry import Registry
from kdbench.types import ModalityUse

MANIFEST = "kdbench_model.json"
CHECKSUMS = "SHA256SUMS"
CARD_JSON, CARD_MD = "model_card.json", "MODEL_CARD.md"
#: The manifest's format version.
FORMAT = 1
#: Plugin categories a model-tree node may come from, searched in this order.
CATEGORIES = ("strategies", "teachers", "generators")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    """``SHA256SUMS`` for every file under ``folder`` (sorted paths, POSIX separators)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    lines = [f"{sha256(p)}  {p.relative_to(folder).as_posix()}\n" for p in files]
    (folder / CHECKSUMS).write_text("".join(lines))


def verify(folder: Path) -> None:
    """Check every file listed in ``SHA256SUMS`` before anything else is read.

    Raises:
        KdbenchError: no checksums, a listed file missing or changed, or a path that leaves
            the folder; the message names the file.
    """
    sums = folder / CHECKSUMS
    if not sums.is_file():
        raise KdbenchError(f"{folder} is not a kdbench model folder: it has no {CHECKSUMS}; "
                           "export the model with `kdbench export`")
    root = folder.resolve()
    listed = set()
    for number, line in enumerate(sums.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        path = (folder / name).resolve()
        if not sep or len(digest) != 64 or not path.is_relative_to(root) or not name:
            raise KdbenchError(f"{sums} line {number} is not '<sha256>  <file in the folder>'; "
                               "export the model again")
        if not path.is_file():
            raise KdbenchError(f"{folder / name} is listed in {CHECKSUMS} but missing; copy the "
                               "whole model folder")
        if sha256(path) != digest:
            raise KdbenchError(f"{folder / name} does not match its sha256 in {CHECKSUMS}: the "
                               "file was changed or damaged; export the model again (nothing "
                               "was loaded)")
        listed.add(name)
    if MANIFEST not in listed:
        raise KdbenchError(f"{sums} does not list {MANIFEST}; export the model again")


@dataclass(frozen=True)
class ExportedModel:
    """A verified model folder.

    Attributes:
        folder: the folder.
        manifest: ``kdbench_model.json``.
    """

    folder: Path
    manifest: dict[str, Any]

    @property
    def accepts(self) -> list[tuple[str, ...]]:
        """The modality subsets the model predicts from (those it was scored on)."""
        return [tuple(s) for s in self.manifest["accepts"]]

    @property
    def backbone_folder(self) -> Path:
        return self.folder / "backbone"

    def trained(self, registry: Registry) -> TrainedModel:
        """The model tree with the installed plugins' classes; each node's checkpoint is its
        weights file in the folder.

        Raises:
            KdbenchError: a plugin is not installed, or is at another version than the one that
                trained the model (its network could differ).
        """
        weights = self.manifest["backbone"]["export"]["weights"]

        def node(spec: dict[str, Any], rel: str) -> TrainedModel:
            cls = _component(registry, spec, self.folder)
            strategy = cls(spec["hparams"], ModalityUse.from_json(spec["modalities"]))
            deps = {role: node(dep, f"{rel}/{role}")
                    for role, dep in sorted(spec.get("dependencies", {}).items())}
            return TrainedModel(strategy, self.backbone_folder / weights[rel], deps)

        return node(self.manifest["model"], "model")


def _component(registry: Registry, spec: dict[str, Any], folder: Path) -> type:
    name, version = spec["component"], str(spec["version"])
    category = spec.get("category")
    for cat in ([category] if category in CATEGORIES else list(CATEGORIES)):
        reg = registry.categories[cat]
        if name in reg:
            cls = reg.get(name)
            if str(cls.version) != version:
                raise KdbenchError(
                    f"{folder / MANIFEST}: the model was trained by {name} version {version}, "
                    f"but version {cls.version} is installed; install the kdbench release that "
                    "exported it (model_card.json names it)")
            return cls
    raise KdbenchError(f"{folder / MANIFEST}: the model needs the plugin {name!r}, which is not "
                       "installed; install the package that provides it")


def open_model(folder: Path) -> ExportedModel:
    """Verify a model folder and read its manifest.

    Raises:
        KdbenchError: not a folder, checksums that fail, or a manifest of another format.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise KdbenchError(f"model folder {folder} does not exist or is not a folder; give the "
                           "folder `kdbench export --out` wrote (unzip a --zip export first)")
    verify(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except json.JSONDecodeError as exc:
        raise KdbenchError(f"{folder / MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kdbench_model") != FORMAT:
        raise KdbenchError(f"{folder / MANIFEST}: not a kdbench model manifest of format "
                           f"{FORMAT}; export the model with this kdbench release")
    return ExportedModel(folder, manifest)

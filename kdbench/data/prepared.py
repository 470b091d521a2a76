"""Opening a dataset made by ``kdbench data prepare``, and loading its cases for a strategy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.cases import check_case_ids
from kdbench.components.backbone import Backbone
from kdbench.data.prepare import ALIASES, CASES, MARKER, read_marker
from kdbench.errors import KdbenchError


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset folder: its marker, its cases, and its backbone's data.

    Attributes:
        path: the folder (``data/NAME``).
        marker: the content of ``prepared.json``.
        cases: case id -> metadata (e.g. ``{"grade": "HGG"}``), in id order.
    """

    path: Path
    marker: dict[str, Any]
    cases: dict[str, dict[str, str]]

    @classmethod
    def open(cls, path: Path) -> PreparedDataset:
        """Open ``path``; a folder without a complete ``prepared.json`` is refused."""
        path = Path(path)
        marker = read_marker(path)
        if marker is None:
            raise KdbenchError(
                f"{path} is not a prepared dataset (no {MARKER}); run `kdbench data prepare`"
            )
        try:
            listing = json.loads((path / CASES).read_text())
            cases = {c["id"]: c["metadata"] for c in listing["cases"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KdbenchError(
                f"{path / CASES} is missing or malformed ({type(exc).__name__}: {exc}); "
                f"prepare the dataset again with `kdbench data prepare --force`") from None
        check_case_ids(cases, str(path / CASES))
        return cls(path, marker, dict(sorted(cases.items())))

    def _listing(self) -> dict[str, dict[str, Any]]:
        if not hasattr(self, "_files"):
            listing = json.loads((self.path / CASES).read_text())
            object.__setattr__(self, "_files", {c["id"]: c for c in listing["cases"]})
        return self._files

    def reference(self, case_id: str) -> Path:
        """The segmentation the case is scored against, in the source release: its reference
        segmentation when the release gives one (the phantom's true labels beside a rater's
        annotation), else its label. Training and validation never read it: the backbone
        prepared them from :meth:`label`."""
        entry = self._listing()[case_id]
        return Path(self.marker["source"]) / entry.get("reference", entry["label"])

    def label(self, case_id: str) -> Path:
        """The case's segmentation that training and validation read, in the source release."""
        return Path(self.marker["source"]) / self._listing()[case_id]["label"]

    def image(self, case_id: str, modality: str) -> Path:
        """The case's image of ``modality`` in the source release."""
        return Path(self.marker["source"]) / self._listing()[case_id]["images"][modality]

    @property
    def backbone_name(self) -> str:
        """The backbone that prepared it (whose ``load_case`` reads its cases)."""
        return self.marker["backbone"]["name"]

    @property
    def name(self) -> str:
        """The dataset's name."""
        return self.marker["name"]

    @property
    def aliases(self) -> dict[str, tuple[str, ...]]:
        """Other releases' ids of its cases (e.g. ``Brats18_CBICA_AAB_1`` -> the BraTS 2021 id
        of that patient), from the release's mapping tables (``aliases.json``); empty for a
        release without them (phantom, nnU-Net raw), whose ids are compared as they are.

        Raises:
            KdbenchError: ``aliases.json`` is malformed (naming the file and the fix).
        """
        if not hasattr(self, "_aliases"):
            path = self.path / ALIASES
            found: dict[str, tuple[str, ...]] = {}
            if path.is_file():
                try:
                    stored = json.loads(path.read_text())["aliases"]
                    found = {str(k): tuple(str(c) for c in v) for k, v in stored.items()
                             if isinstance(v, list)}
                    if len(found) != len(stored):
                        raise TypeError("a value is not a list of case ids")
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise KdbenchError(
                        f"{path} is malformed ({type(exc).__name__}: {exc}); prepare the "
                        "dataset again with `kdbench data prepare --force`") from None
            object.__setattr__(self, "_aliases", found)
        return self._aliases

    def strata(self) -> dict[str, str] | None:
        """Case id -> grade (or source) for stratifying the test set, when the release has it."""
        for key in ("grade", "source"):
            if any(key in meta for meta in self.cases.values()):
                return {cid: meta.get(key, "unknown") for cid, meta in self.cases.items()}
        return None

    def load_case(self, backbone: Backbone, case_id: str, modalities: list[str] | tuple[str, ...]
                  ) -> tuple[Any, Any]:
        """The preprocessed (images of ``modalities``, segmentation) of one case, read by
        ``backbone`` (an instance of the backbone named in the marker, ``backbone_name``).

        All strategies read the same preprocessed bytes; a strategy that sees fewer modalities
        gets a channel selection of them.
        """
        if case_id not in self.cases:
            raise KdbenchError(f"case {case_id!r} is not in the prepared dataset {self.path}")
        info = self.marker["backbone"]
        if backbone.name != info["name"]:
            raise KdbenchError(f"{self.path} was prepared by backbone {info['name']!r}, not "
                               f"{backbone.name!r}; read it with that backbone")
        return backbone.load_case(self.path / info["name"], info["summary"], case_id, modalities)

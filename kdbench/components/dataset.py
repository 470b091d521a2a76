"""Datasets: sources of BraTS-like cases (releases on disk, nnU-Net raw data, the phantom)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from kdbench.components.base import Component

if TYPE_CHECKING:
    from kdbench.cases import Release


class DatasetOptions(BaseModel):
    """Options a protocol may set under ``dataset.options``; subclasses add fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Dataset(Component):
    """A source of cases.

    A synthetic dataset (``synthetic = True``) writes its cases with :meth:`generate`, in a
    BraTS release layout, so that the real ingestion path reads them. A reader of releases on
    disk implements :meth:`detect` and :meth:`read`; ``kdbench data prepare`` asks every
    registered reader whether it recognises a folder.
    """

    synthetic: ClassVar[bool] = False
    Options: ClassVar[type[DatasetOptions]] = DatasetOptions

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> DatasetOptions:
        """Validated options (raises ``pydantic.ValidationError``)."""
        return cls.Options.model_validate(options)

    @classmethod
    def case_count(cls, options: DatasetOptions) -> int | None:
        """Number of cases the options give, when known before reading any file."""
        return None

    def generate(self, dest: Path, options: DatasetOptions) -> Path:
        """Write the cases under ``dest`` and return the release folder (synthetic only)."""
        raise NotImplementedError(f"dataset {self.name!r} is read from disk, not generated")

    @classmethod
    def detect(cls, root: Path) -> str | None:
        """The layout name if this reader recognises the folder ``root``, else ``None``.

        Must be cheap: it lists file names, it reads no image.
        """
        return None

    def read(self, root: Path, options: DatasetOptions) -> Release:
        """List the cases of the release at ``root`` (file names only; no voxel is read).

        Problems found while listing (missing modality, duplicate or unsafe case id, empty
        release) go to ``Release.problems``; nothing is raised for them.
        """
        raise NotImplementedError(f"dataset {self.name!r} is generated, not read from disk")

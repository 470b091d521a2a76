"""Datasets: sources of BraTS-like cases (releases on disk, nnU-Net raw data, the phantom)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from kdbench.components.base import Component


class DatasetOptions(BaseModel):
    """Options a protocol may set under ``dataset.options``; subclasses add fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Dataset(Component):
    """A source of cases.

    A synthetic dataset (``synthetic = True``) writes its cases with :meth:`generate`, in a
    BraTS release layout, so that the real ingestion path reads them. A reader of releases on
    disk takes ``dataset.path`` from the protocol instead.
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

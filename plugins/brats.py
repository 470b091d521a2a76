"""The ``brats`` dataset: a BraTS release on disk (2018, 2019-2021 or 2023+ naming).

The release is read from ``dataset.path`` of the protocol; its layout is detected from the file
names (see docs/protocols.md). The case count is known only once the folder is read, so the
protocol checks of sizes against the pool happen at ``kdbench data prepare``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kdbench import Dataset, DatasetOptions, hookimpl


class BratsOptions(DatasetOptions):
    """``dataset.options`` for a BraTS release."""

    layout: Literal["auto", "2018", "2019-2021", "2023", "nnunet"] = Field(
        "auto", description="Naming scheme of the release; 'auto' detects it from file names."
    )


class BratsRelease(Dataset):
    """A BraTS release on disk, mapped to channels t1, t1ce, t2, flair and labels 0/1/2/4."""

    name = "brats"
    version = "1"
    Options = BratsOptions


@hookimpl
def kdbench_register_datasets(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register the BraTS release reader."""
    registry.add(BratsRelease)

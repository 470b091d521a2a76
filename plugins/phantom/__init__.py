"""The synthetic BraTS phantom: a dataset plugin that writes brain-tumour cases with four MRI
modalities and BraTS labels, deterministic by seed, in the BraTS 2021 release layout.

Anatomy comes from the MNI ICBM152 2009c template shipped with nilearn when present (see
``MNI_LICENSE.txt`` in this folder for its copyright and permission notice), else from a
procedural brain. Each case deforms the anatomy, grows a glioma-like tumour (edema, enhancing
rim, necrosis; some low-grade-like cases without enhancement) and renders T1, T1ce, T2 and
FLAIR with modality-specific contrasts, bias field and noise, so that each modality carries
the information it carries in real MRI (ET needs T1ce, WT is best seen in FLAIR).

Output: ``dest/BraTS2021_NNNNN/BraTS2021_NNNNN_{t1,t1ce,t2,flair,seg}.nii.gz``; images int16
(intensity units like BraTS's), labels uint8 in {0, 1, 2, 4}; an isotropic LPS affine
``diag(-s, -s, s)`` centred on the origin, with ``s`` chosen so the brain fills the grid
(about 3.4 mm at 64^3, 1.7 mm at 128^3 with the MNI anatomy); ``dest/phantom.json`` records
the options, the anatomy used and each file's sha256.

Importing this package loads numpy only; scipy and nibabel are imported when generating.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from kdbench import Dataset, DatasetOptions, hookimpl
from kdbench_plugins.phantom.build import PHANTOM_VERSION, generate_phantom

if TYPE_CHECKING:
    from kdbench.registry import CategoryRegistry

__all__ = ["LabelNoiseOptions", "PhantomDataset", "PhantomOptions", "generate_phantom",
           "kdbench_register_datasets"]

#: Smallest grid side: below this the tumour's sub-regions are no longer representable.
MIN_SIDE = 24


class LabelNoiseOptions(BaseModel):
    """The rater model of ``label_noise`` (``docs/phantom.md``, "Annotation noise")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    boundary_mm: float = Field(4.0, ge=0, le=20, description="RMS displacement of the "
                               "boundaries (mm).")
    correlation_mm: float = Field(15.0, gt=0, le=200, description="Length over which the "
                                  "displacement varies (mm).")
    lobe_drop_p: float = Field(0.3, ge=0, le=1, description="Probability of leaving out one "
                               "lobe of edema.")
    lobe_mm: float = Field(10.0, gt=0, le=100, description="Radius of the edema left out (mm).")


class PhantomOptions(DatasetOptions):
    """Options of the phantom (``dataset.options`` in a protocol)."""

    cases: int = Field(24, ge=2, le=10000, description="Number of cases to generate.")
    shape: tuple[int, int, int] = Field(
        (64, 64, 64),
        description=(
            f"Grid shape (each side >= {MIN_SIDE}); the isotropic voxel spacing scales so that "
            "the brain fills the volume."
        ),
    )
    seed: int = Field(0, ge=0, description="Random seed; case k depends only on (seed, k).")
    anatomy: Literal["auto", "mni", "procedural"] = Field(
        "auto",
        description=(
            "Healthy anatomy: 'mni' (the MNI ICBM152 template shipped with nilearn), "
            "'procedural' (a synthetic brain), or 'auto' (mni when available)."
        ),
    )

    label_noise: LabelNoiseOptions | None = Field(
        None,
        description=(
            "Annotation noise (a model of inter-rater variability): each case's seg is a "
            "rater's annotation, which training and validation read, and seg_reference its "
            "true labels, which the test set is scored on. Default: exact labels."
        ),
    )

    @model_serializer(mode="wrap")
    def _without_unset_noise(self, handler):  # noqa: ANN001, ANN202 - pydantic's protocol
        """``label_noise`` is left out when not set, so a phantom without it keeps the ids
        (dataset name, Job ids) it had before the option existed."""
        data = handler(self)
        if isinstance(data, dict) and data.get("label_noise") is None:
            data.pop("label_noise", None)
        return data

    @field_validator("shape")
    @classmethod
    def _check_shape(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        """Reject grids too small to hold a brain with a tumour, or absurdly large."""
        if any(side < MIN_SIDE for side in value):
            raise ValueError(f"each side of shape must be at least {MIN_SIDE}, got {value}")
        if any(side > 512 for side in value):
            raise ValueError(f"each side of shape must be at most 512, got {value}")
        return value


class PhantomDataset(Dataset):
    """Synthetic BraTS 2021-layout phantom with tumours (deterministic by seed)."""

    name = "phantom"
    version = PHANTOM_VERSION
    synthetic = True
    Options = PhantomOptions

    @classmethod
    def case_count(cls, options: PhantomOptions) -> int:  # type: ignore[override]
        """Number of cases the options give.

        Args:
            options: validated phantom options.

        Returns:
            ``options.cases``.
        """
        return options.cases

    def generate(self, dest: Path, options: PhantomOptions) -> Path:  # type: ignore[override]
        """Write the phantom under ``dest`` (or reuse an identical one) and return it.

        Args:
            dest: the release folder.
            options: validated phantom options.

        Returns:
            The release folder holding the ``BraTS2021_NNNNN`` case folders.
        """
        from kdbench_plugins.phantom.annotation import LabelNoise

        noise = options.label_noise
        return generate_phantom(
            dest,
            cases=options.cases,
            shape=options.shape,
            seed=options.seed,
            anatomy=options.anatomy,
            label_noise=None if noise is None else LabelNoise(**noise.model_dump()),
        )


@hookimpl
def kdbench_register_datasets(registry: CategoryRegistry) -> None:
    """Register the phantom dataset.

    Args:
        registry: the datasets' registry.
    """
    registry.add(PhantomDataset)

"""The ``nnunet`` backbone: nnU-Net v2 networks from plans, and nnU-Net's training recipe.

Registered through ``kdbench_register_backbones`` like any third-party backbone. This module
declares the backbone and the options a protocol may set; nnU-Net itself is imported only
where a network is built or trained, never when the plugin loads.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kdbench import Backbone, BackboneOptions, hookimpl


class NnUNetOptions(BackboneOptions):
    """``backbone.options`` of a protocol for the nnU-Net backbone."""

    planner: Literal["default", "ResEncM", "ResEncL"] = Field(
        "default",
        description="nnU-Net experiment planner: 'default' gives PlainConvUNet; 'ResEncM' and "
        "'ResEncL' the residual-encoder presets (nnU-Net Revisited, MICCAI 2024).",
    )
    configuration: Literal["3d_fullres", "2d", "3d_lowres"] = Field(
        "3d_fullres", description="nnU-Net configuration to train."
    )
    patch_size: tuple[int, int, int] | None = Field(
        None, description="Override of the planned patch size (tiny plans on CPU)."
    )
    batch_size: int | None = Field(None, ge=1, description="Override of the planned batch size.")
    mirroring: bool = Field(True, description="Test-time mirroring in sliding-window inference.")


class NnUNetBackbone(Backbone):
    """nnU-Net v2: networks from plans, its data loading, augmentation, loss and inference."""

    name = "nnunet"
    version = "1"
    Options = NnUNetOptions


@hookimpl
def kdbench_register_backbones(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register the nnU-Net backbone."""
    registry.add(NnUNetBackbone)

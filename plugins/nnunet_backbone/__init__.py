"""The ``nnunet`` backbone: nnU-Net v2 networks from plans, and nnU-Net's training recipe.

Registered through ``kdbench_register_backbones`` like any third-party backbone. nnU-Net is
imported only where it is used (preparing data, building or training a network), never when
the plugin loads. Its environment variables are set in one place,
:mod:`kdbench_plugins.nnunet_backbone.environment`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    Field,
    PositiveInt,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from kdbench import Backbone, BackboneOptions, hookimpl

if TYPE_CHECKING:
    import numpy as np

    from kdbench import (
        ExportedPredictRequest,
        ExportRequest,
        ModelRequest,
        PredictRequest,
        SynthesisRequest,
        TrainRequest,
        TrainResult,
    )
    from kdbench.cases import CaseFiles


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
    patch_size: tuple[int, int] | tuple[int, int, int] | None = Field(
        None, description="Override of the planned patch size (tiny plans on CPU): three "
        "values for the 3d configurations, two (one slice) for 2d."
    )
    batch_size: int | None = Field(None, ge=1, description="Override of the planned batch size.")
    features_per_stage: tuple[PositiveInt, ...] | None = Field(
        None,
        description="Override of the planned feature maps per encoder stage (one per stage, as "
        "in plans.json's arch_kwargs); narrower networks for CPU demos.",
    )
    mirroring: bool = Field(True, description="Test-time mirroring in sliding-window inference.")
    augmentation: Literal["nnunet", "gpu"] = Field(
        "nnunet",
        description="Training augmentation: 'nnunet' runs nnU-Net's pipeline in its CPU data "
        "workers (as nnU-Net does); 'gpu' runs the same transforms batched on the training "
        "device, the workers only loading and cropping (docs/augmentation.md).",
    )

    @model_validator(mode="after")
    def _patch_matches_configuration(self) -> NnUNetOptions:
        if self.patch_size is not None:
            wanted = 2 if self.configuration == "2d" else 3
            if len(self.patch_size) != wanted:
                raise ValueError(
                    f"configuration {self.configuration!r} takes a patch_size of {wanted} "
                    f"values, got {list(self.patch_size)}")
        if self.configuration == "2d" and self.augmentation == "gpu":
            raise ValueError("augmentation 'gpu' is for 3d patches; use the default "
                             "augmentation with configuration '2d'")
        return self

    @model_serializer(mode="wrap")
    def _omit_default_augmentation(self, handler: SerializerFunctionWrapHandler
                                   ) -> dict[str, Any]:
        # The options enter every Job id: nnU-Net's augmentation, the default, is left out so
        # that the Jobs planned before this option existed keep their ids (and results).
        data = handler(self)
        if self.augmentation == "nnunet":
            data.pop("augmentation", None)
        return data


class NnUNetBackbone(Backbone):
    """nnU-Net v2: networks from plans, its data loading, augmentation, loss and inference."""

    name = "nnunet"
    version = "1"
    Options = NnUNetOptions

    @classmethod
    def preparation_options(cls, options: NnUNetOptions) -> dict[str, Any]:  # type: ignore[override]
        """Planner and configuration decide the preprocessing; the rest is for training."""
        return {"planner": options.planner, "configuration": options.configuration}

    def prepare(
        self,
        cases: Sequence[CaseFiles],
        label_map: Mapping[int, int],
        dest: Path,
        options: NnUNetOptions,  # type: ignore[override]
        *,
        name: str,
        num_processes: int = 1,
    ) -> dict[str, Any]:
        """Write an nnU-Net raw dataset (region-based BraTS labels), then plan and preprocess."""
        from kdbench_plugins.nnunet_backbone.environment import NnUNetFolders
        from kdbench_plugins.nnunet_backbone.preprocess import plan_and_preprocess
        from kdbench_plugins.nnunet_backbone.raw_dataset import write_raw_dataset

        folders = NnUNetFolders.under(dest, name)
        write_raw_dataset(list(cases), label_map, folders.raw_dataset,
                          description=f"kdbench dataset {name}")
        summary = plan_and_preprocess(folders, options.planner, options.configuration,
                                      num_processes)
        summary["dataset_name"] = folders.dataset_name
        return summary

    def load_case(
        self, dest: Path, summary: Mapping[str, Any], case_id: str, modalities: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The preprocessed case from nnU-Net's dataset class, channels of ``modalities``."""
        import numpy as np
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        from kdbench.modalities import channel_indices

        folder = str(Path(dest) / summary["data_folder"])
        dataset = infer_dataset_class(folder)(folder, [case_id])
        data, seg, _, _ = dataset.load_case(case_id)
        channels = [np.asarray(data[i]) for i in channel_indices(modalities)]
        return np.stack(channels), np.asarray(seg[:])

    def train(self, request: TrainRequest) -> TrainResult:
        """nnU-Net's training recipe through ``KdbenchTrainer`` (resumes from checkpoints)."""
        from kdbench_plugins.nnunet_backbone.engine import train

        return train(request)

    def load_model(self, request: ModelRequest) -> Any:
        """The trained model from its final checkpoint, frozen, in eval mode."""
        from kdbench_plugins.nnunet_backbone.engine import load_model

        return load_model(request.trained, request.dataset, request.options, request.device)

    def predict(self, request: PredictRequest) -> dict[str, Path]:
        """nnU-Net's sliding-window inference and NIfTI export, in the source's labels."""
        from kdbench_plugins.nnunet_backbone.engine import predict

        return predict(request.trained, request.dataset, request.options, request.case_ids,
                       request.available, request.out_dir, request.device)

    def export(self, request: ExportRequest) -> dict[str, Any]:
        """Weights (safetensors) of the model tree, plans, dataset.json and fingerprint."""
        from kdbench_plugins.nnunet_backbone.deploy import export

        return export(request)

    def predict_exported(self, request: ExportedPredictRequest) -> dict[str, Path]:
        """nnU-Net's preprocessing of each case's files, then the Job's inference and export."""
        from kdbench_plugins.nnunet_backbone.deploy import predict_exported

        return predict_exported(request)

    def synthesise(self, request: SynthesisRequest) -> Any:
        """A generator's synthesised channels per case in nnU-Net's preprocessed space."""
        from kdbench_plugins.nnunet_backbone.engine import synthesise

        return synthesise(request.trained, request.dataset, request.options, request.case_ids,
                          request.device)


@hookimpl
def kdbench_register_backbones(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register the nnU-Net backbone."""
    registry.add(NnUNetBackbone)

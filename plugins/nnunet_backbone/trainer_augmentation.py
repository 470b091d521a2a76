"""The trainer's training augmentation: nnU-Net's pipeline in the loader's CPU workers
(``augmentation: nnunet``), or the same pipeline on the batch's device (``augmentation: gpu``,
:mod:`.gpu_augment`).

:class:`DeviceAugmentation` is mixed into :class:`.trainer.KdbenchTrainer` (an
``nnUNetTrainer``), whose attributes its methods use.
"""

from __future__ import annotations

from typing import Any

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class DeviceAugmentation:
    """nnU-Net's ``get_training_transforms``, replaced for an ``nnUNetTrainer`` subclass, and
    the augmentation of a batch on the device that ``train_step`` runs with ``gpu``."""

    _gpu_augment: Any

    def get_training_transforms(self, patch_size, rotation_for_DA,  # noqa: ANN001, N803
                                deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
                                use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None) -> Any:
        """nnU-Net's training transforms (``augmentation: nnunet``); with ``gpu``, none in
        the loader's workers (they load and crop nnU-Net's initial patch) and the same
        pipeline, built from these same arguments, for :meth:`train_step` to run on the
        device."""
        arguments = (patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                     do_dummy_2d_data_aug)
        if getattr(self, "settings", None) is None or self.settings.augmentation == "nnunet":
            return nnUNetTrainer.get_training_transforms(
                *arguments, use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded,
                foreground_labels=foreground_labels, regions=regions, ignore_label=ignore_label)
        from kdbench_plugins.nnunet_backbone.gpu_augment import GpuAugmentation

        if is_cascaded:
            raise ValueError("augmentation 'gpu' does not support nnU-Net's cascade; use "
                             "augmentation: nnunet")
        self._gpu_augment = GpuAugmentation(*arguments, use_mask_for_norm=use_mask_for_norm,
                                            regions=regions, ignore_label=ignore_label)
        return None

    def _augment_on_device(self, batch: dict) -> dict:
        """The batch's cropped patches augmented on the device (``augmentation: gpu``). The
        generator is seeded from torch's global generator, whose state the checkpoints keep, so
        a resumed run draws the augmentations of an uninterrupted one."""
        seed = int(torch.randint(0, 2**62, (1,)))
        generator = torch.Generator().manual_seed(seed)
        data = batch["data"].to(self.device, non_blocking=True)
        seg = batch["target"].to(self.device, non_blocking=True)
        data, target = self._gpu_augment(data, seg, generator)
        return {**batch, "data": data, "target": target}

"""nnU-Net v2's default training augmentation, batched on the batch's device (``augmentation:
gpu``).

nnU-Net augments each sample on a CPU worker (batchgeneratorsv2, one sample at a time): on a
GPU host its data loader, not the GPU, bounds the speed. :class:`GpuAugmentation` runs the same
transforms, with the same parameter ranges and probabilities and in the same order as
``nnUNetTrainer.get_training_transforms`` (nnunetv2 2.8, batchgeneratorsv2 0.3), on a whole
batch at once, on whatever device the batch is on. The CPU workers only load, oversample
foreground and crop nnU-Net's larger initial patch; the spatial transform then samples the
final patch around its centre, as nnU-Net's ``SpatialTransform(random_crop=False)`` does.

The pipeline, per sample (probabilities per sample unless said otherwise):

1. spatial: rotation p 0.2 (each axis uniform in nnU-Net's ``rotation_for_DA``), scaling p 0.2
   (one factor in [0.7, 1.4] for all axes), no elastic deformation; trilinear for the image
   (zeros outside), nnU-Net's label-score resampling for the segmentation (trilinear one-hot
   scores, float16 at scale 1000 as nnU-Net rounds them, arg-max, ties to the nearest
   neighbour, -1 outside); without rotation or scaling an integer centre crop;
2. Gaussian noise p 0.1 (one std in [0, 0.1] for all channels);
3. Gaussian blur p 0.2, each channel p 0.5, sigma in [0.5, 1] per channel and axis (separable,
   nnU-Net's kernel sizes, reflect padding);
4. multiplicative brightness p 0.15, contrast p 0.15 (range preserved): factors per channel from
   nnU-Net's ``BGContrast((0.75, 1.25))`` (half below 1, half above);
5. low resolution p 0.25, each channel p 0.5, one scale in [0.5, 1] per channel (nearest-exact
   down, trilinear up);
6. gamma on the inverted image p 0.1, then gamma p 0.3: per channel ``BGContrast((0.7, 1.5))``,
   statistics retained;
7. mirroring, each of nnU-Net's mirror axes p 0.5;
8. then nnU-Net's deterministic steps: image set to 0 where the segmentation is -1 (channels
   normalised with a mask), -1 to 0, labels to regions, and nearest-exact targets at every
   deep-supervision scale (the same ``interpolate`` call as nnU-Net's).

The parameters are drawn on the CPU from one ``torch.Generator`` (:meth:`sample`), so a batch
is a function of that generator's state; the noise itself is drawn on the device from a
generator seeded by it. Given the same parameters, each step gives nnU-Net's output up to float
rounding (``tests/plugins/nnunet_backbone/test_gpu_augment.py`` compares them transform by
transform). What differs: nnU-Net draws from numpy's and torch's global generators sample by
sample, so the two paths never draw the same augmentations, only the same distributions.

The parameters and their draw are :mod:`.augment_draw`, steps 1 and 7 :mod:`.augment_spatial`,
steps 2-6 :mod:`.augment_intensity`; this module holds the pipeline and step 8.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from kdbench_plugins.nnunet_backbone import augment_intensity, augment_spatial
from kdbench_plugins.nnunet_backbone.augment_draw import AugmentationDraw, sample_draw


class GpuAugmentation:
    """nnU-Net's default training transforms on a batch, on the batch's device.

    Built from the arguments nnU-Net passes to ``get_training_transforms`` (the trainer
    captures them there), so the patch size, rotation range, mirror axes, regions and
    deep-supervision scales are nnU-Net's own for the plans.

    Example::

        augment = GpuAugmentation(patch_size, rotation, ds_scales, (0, 1, 2), False,
                                  use_mask_for_norm=[True] * 4, regions=[(1, 2, 3), (2, 3), (3,)])
        data, targets = augment(data, seg, torch.Generator().manual_seed(0))
    """

    def __init__(
        self,
        patch_size: Sequence[int],
        rotation_for_DA: tuple[float, float],  # noqa: N803 - nnU-Net's name
        deep_supervision_scales: Sequence[Any] | None,
        mirror_axes: Sequence[int] | None,
        do_dummy_2d_data_aug: bool,
        use_mask_for_norm: Sequence[bool] | None = None,
        regions: Sequence[Any] | None = None,
        ignore_label: int | None = None,
    ) -> None:
        if len(patch_size) != 3:
            raise ValueError(f"GPU augmentation is for 3D patches; got patch size {patch_size}")
        self.patch_size = tuple(int(p) for p in patch_size)
        if not isinstance(rotation_for_DA, tuple | list) or len(rotation_for_DA) != 2:
            raise ValueError(f"rotation_for_DA must be a (low, high) range, got {rotation_for_DA}")
        self.rotation = (float(rotation_for_DA[0]), float(rotation_for_DA[1]))
        self.deep_supervision_scales = (
            None if deep_supervision_scales is None
            else [[float(s)] * 3 if not isinstance(s, list | tuple) else [float(x) for x in s]
                  for s in deep_supervision_scales])
        self.mirror_axes = tuple(mirror_axes or ())
        self.dummy_2d = bool(do_dummy_2d_data_aug)
        self.mask_channels = [i for i, m in enumerate(use_mask_for_norm or ()) if m]
        if regions is not None:
            regions = list(regions) + ([ignore_label] if ignore_label is not None else [])
            self.regions: list[tuple[int, ...]] | None = [
                (int(r),) if isinstance(r, int) else tuple(int(x) for x in r) for r in regions]
        else:
            self.regions = None

    # -- parameters -----------------------------------------------------------------------------

    def sample(self, batch_size: int, channels: int,
               generator: torch.Generator) -> AugmentationDraw:
        """Draw one batch's parameters from ``generator`` (a CPU generator)."""
        return sample_draw(batch_size, channels, generator, rotation=self.rotation,
                           mirror_axes=self.mirror_axes, dummy_2d=self.dummy_2d)

    # -- the pipeline ---------------------------------------------------------------------------

    def __call__(self, data: torch.Tensor, seg: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, list[torch.Tensor] | torch.Tensor]:
        """Augment a batch: ``data`` (B, C, *initial patch) float, ``seg`` (B, 1, *initial
        patch) integer labels (-1 outside the brain), on one device. Returns the images
        (B, C, *patch) and the targets (a list over deep-supervision scales of (B, regions,
        *scaled patch) bool tensors; one tensor without deep supervision)."""
        draw = self.sample(data.shape[0], data.shape[1], generator)
        return self.apply(data, seg, draw)

    def apply(self, data: torch.Tensor, seg: torch.Tensor, draw: AugmentationDraw
              ) -> tuple[torch.Tensor, list[torch.Tensor] | torch.Tensor]:
        """The pipeline with given parameters (see :meth:`__call__`)."""
        data, seg = self.spatial(data.float(), seg, draw)
        data = self.intensity(data, draw)
        data, seg = self.mirror(data, seg, draw)
        return data, self.targets(data, seg)

    def intensity(self, data: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
        """Noise, blur, brightness, contrast, low resolution, gammas (in nnU-Net's order)."""
        return augment_intensity.intensity(data, draw, self.patch_size, self.dummy_2d)

    # spatial (:mod:`.augment_spatial`) ----------------------------------------------------------

    def affine(self, draw: AugmentationDraw) -> torch.Tensor:
        """(B, 3, 3) rotation-and-scaling matrices of the draw
        (:func:`.augment_spatial.affine`)."""
        return augment_spatial.affine(draw, self.dummy_2d)

    def grid(self, affine: torch.Tensor, shape: Sequence[int], device: torch.device
             ) -> torch.Tensor:
        """``grid_sample`` grids of the patch centred in ``shape``
        (:func:`.augment_spatial.grid`)."""
        return augment_spatial.grid(affine, self.patch_size, shape, device)

    def spatial(self, data: torch.Tensor, seg: torch.Tensor, draw: AugmentationDraw
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotation and scaling about the centre of the initial patch, or an integer centre
        crop for samples with neither (:func:`.augment_spatial.spatial`)."""
        return augment_spatial.spatial(data, seg, draw, self.patch_size, self.dummy_2d)

    mirror = staticmethod(augment_spatial.mirror)

    # intensity (:mod:`.augment_intensity`) ------------------------------------------------------

    noise = staticmethod(augment_intensity.noise)
    blur_kernel = staticmethod(augment_intensity.blur_kernel)
    blur = staticmethod(augment_intensity.blur)
    brightness = staticmethod(augment_intensity.brightness)
    contrast = staticmethod(augment_intensity.contrast)
    gamma_transform = staticmethod(augment_intensity.gamma_transform)

    def low_resolution(self, data: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
        """Simulated low resolution of the chosen (sample, channel) pairs
        (:func:`.augment_intensity.low_resolution`)."""
        return augment_intensity.low_resolution(data, draw, self.patch_size, self.dummy_2d)

    # targets ------------------------------------------------------------------------------------

    def targets(self, data: torch.Tensor, seg: torch.Tensor
                ) -> list[torch.Tensor] | torch.Tensor:
        """nnU-Net's masking (in place on ``data``), label -1 to 0, regions, and the
        deep-supervision targets."""
        outside = seg[:, 0] < 0
        if self.mask_channels:
            chans = torch.tensor(self.mask_channels, device=data.device)
            data[:, chans] = data[:, chans].masked_fill(outside[:, None], 0.0)
        seg = seg.masked_fill(seg == -1, 0)
        if self.regions is not None:
            target = torch.stack(
                [torch.isin(seg[:, 0], torch.tensor(r, device=seg.device, dtype=seg.dtype))
                 for r in self.regions], 1)
        else:
            target = seg
        if self.deep_supervision_scales is None:
            return target
        out = []
        as_float = None
        for scales in self.deep_supervision_scales:
            if all(s == 1 for s in scales):
                out.append(target)
                continue
            if as_float is None:
                as_float = target.float()
            shape = [round(p * s) for p, s in zip(target.shape[2:], scales, strict=True)]
            out.append(F.interpolate(as_float, shape, mode="nearest-exact").to(target.dtype))
        return out

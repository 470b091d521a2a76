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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

#: nnU-Net's default probabilities (``nnUNetTrainer.get_training_transforms``).
P_ROTATION = 0.2
P_SCALING = 0.2
SCALING = (0.7, 1.4)
P_NOISE, NOISE_STD = 0.1, (0.0, 0.1)
P_BLUR, P_BLUR_CHANNEL, BLUR_SIGMA = 0.2, 0.5, (0.5, 1.0)
P_BRIGHTNESS, BRIGHTNESS = 0.15, (0.75, 1.25)
P_CONTRAST, CONTRAST = 0.15, (0.75, 1.25)
P_LOWRES, P_LOWRES_CHANNEL, LOWRES_SCALE = 0.25, 0.5, (0.5, 1.0)
P_GAMMA_INVERTED, P_GAMMA, GAMMA = 0.1, 0.3, (0.7, 1.5)
P_MIRROR = 0.5
#: batchgeneratorsv2's blur kernel truncation (``blur_dimension``) and gamma epsilon.
BLUR_TRUNCATE = 6
EPS = 1e-7
#: nnU-Net's padding label of the segmentation in the spatial transform.
SEG_PADDING = -1


@dataclass
class AugmentationDraw:
    """The random parameters of one batch, per sample (CPU tensors; B samples, C channels, D
    spatial axes). Every field is drawn whether or not its transform applies, so that the
    parameters of one transform never shift another's."""

    rotate: torch.Tensor  # (B,) bool
    angles: torch.Tensor  # (B, 3) radians, about axes 0, 1, 2 (0 where not rotated)
    scale: torch.Tensor  # (B,) bool
    scale_factor: torch.Tensor  # (B,) (1 where not scaled)
    noise: torch.Tensor  # (B,) bool
    noise_std: torch.Tensor  # (B,)
    blur: torch.Tensor  # (B,) bool
    blur_channels: torch.Tensor  # (B, C) bool
    blur_sigma: torch.Tensor  # (B, C, D)
    brightness: torch.Tensor  # (B,) bool
    brightness_factor: torch.Tensor  # (B, C)
    contrast: torch.Tensor  # (B,) bool
    contrast_factor: torch.Tensor  # (B, C)
    lowres: torch.Tensor  # (B,) bool
    lowres_channels: torch.Tensor  # (B, C) bool
    lowres_scale: torch.Tensor  # (B, C)
    gamma_inverted: torch.Tensor  # (B,) bool
    gamma_inverted_value: torch.Tensor  # (B, C)
    gamma: torch.Tensor  # (B,) bool
    gamma_value: torch.Tensor  # (B, C)
    mirror: torch.Tensor  # (B, D) bool, over the D spatial axes (False off nnU-Net's mirror axes)
    noise_seed: int

    def select(self, index: Sequence[int]) -> AugmentationDraw:
        """The draw of the samples ``index`` (in that order)."""
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return AugmentationDraw(**{
            f.name: (getattr(self, f.name) if f.name == "noise_seed"
                     else getattr(self, f.name)[idx]) for f in fields(self)})


def bg_contrast(low: float, high: float, shape: tuple[int, ...],
                generator: torch.Generator) -> torch.Tensor:
    """batchgeneratorsv2's ``BGContrast((low, high))``: with probability 0.5 uniform in
    [low, 1), else uniform in [max(low, 1), high) (for low < 1)."""
    below = torch.rand(shape, generator=generator, dtype=torch.float64) < 0.5
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    down = low + u * (1 - low)
    up = max(low, 1.0) + u * (high - max(low, 1.0))
    return torch.where(below & (low < 1), down, up)


def _uniform(low: float, high: float, shape: tuple[int, ...],
             generator: torch.Generator) -> torch.Tensor:
    return low + torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low)


def _chance(p: float, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64) < p


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
        b, c, d = batch_size, channels, 3
        g = generator
        rotate = _chance(P_ROTATION, (b,), g)
        scale = _chance(P_SCALING, (b,), g)
        angles = _uniform(*self.rotation, (b, d), g)
        if self.dummy_2d:  # nnU-Net rotates the 2D slices (axes 1, 2) only
            angles[:, :2] = 0
        angles = torch.where(rotate[:, None], angles, torch.zeros_like(angles))
        factor = torch.where(scale, _uniform(*SCALING, (b,), g), torch.ones(b, dtype=torch.float64))
        mirror = _chance(P_MIRROR, (b, d), g)
        allowed = torch.zeros(d, dtype=torch.bool)
        allowed[list(self.mirror_axes)] = True
        return AugmentationDraw(
            rotate=rotate, angles=angles, scale=scale, scale_factor=factor,
            noise=_chance(P_NOISE, (b,), g), noise_std=_uniform(*NOISE_STD, (b,), g),
            blur=_chance(P_BLUR, (b,), g), blur_channels=_chance(P_BLUR_CHANNEL, (b, c), g),
            blur_sigma=_uniform(*BLUR_SIGMA, (b, c, d), g),
            brightness=_chance(P_BRIGHTNESS, (b,), g),
            brightness_factor=bg_contrast(*BRIGHTNESS, (b, c), g),
            contrast=_chance(P_CONTRAST, (b,), g),
            contrast_factor=bg_contrast(*CONTRAST, (b, c), g),
            lowres=_chance(P_LOWRES, (b,), g),
            lowres_channels=_chance(P_LOWRES_CHANNEL, (b, c), g),
            lowres_scale=_uniform(*LOWRES_SCALE, (b, c), g),
            gamma_inverted=_chance(P_GAMMA_INVERTED, (b,), g),
            gamma_inverted_value=bg_contrast(*GAMMA, (b, c), g),
            gamma=_chance(P_GAMMA, (b,), g), gamma_value=bg_contrast(*GAMMA, (b, c), g),
            mirror=mirror & allowed,
            noise_seed=int(torch.randint(0, 2**62, (1,), generator=g)),
        )

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
        data = self.noise(data, draw)
        data = self.blur(data, draw)
        data = self.brightness(data, draw)
        data = self.contrast(data, draw)
        data = self.low_resolution(data, draw)
        data = self.gamma_transform(data, draw.gamma_inverted, draw.gamma_inverted_value, True)
        return self.gamma_transform(data, draw.gamma, draw.gamma_value, False)

    # spatial ------------------------------------------------------------------------------------

    def affine(self, draw: AugmentationDraw) -> torch.Tensor:
        """(B, 3, 3) matrices ``Rz @ Ry @ Rx @ S`` (batchgeneratorsv2's
        ``create_affine_matrix_3d``; in dummy 2D the in-plane rotation and scaling of
        ``create_affine_matrix_2d`` on axes 1, 2)."""
        a = draw.angles
        cos, sin = torch.cos(a), torch.sin(a)
        b = a.shape[0]
        one, zero = torch.ones(b, dtype=a.dtype), torch.zeros(b, dtype=a.dtype)

        def mat(rows: list[list[torch.Tensor]]) -> torch.Tensor:
            return torch.stack([torch.stack(r, -1) for r in rows], -2)

        if self.dummy_2d:
            c2, s2 = cos[:, 2], sin[:, 2]
            rotation = mat([[one, zero, zero], [zero, c2, -s2], [zero, s2, c2]])
            diag = torch.stack([one, draw.scale_factor, draw.scale_factor], -1)
        else:
            rx = mat([[one, zero, zero], [zero, cos[:, 0], -sin[:, 0]],
                      [zero, sin[:, 0], cos[:, 0]]])
            ry = mat([[cos[:, 1], zero, sin[:, 1]], [zero, one, zero],
                      [-sin[:, 1], zero, cos[:, 1]]])
            rz = mat([[cos[:, 2], -sin[:, 2], zero], [sin[:, 2], cos[:, 2], zero],
                      [zero, zero, one]])
            rotation = rz @ ry @ rx
            diag = draw.scale_factor[:, None].expand(b, 3)
        return rotation @ torch.diag_embed(diag)

    def grid(self, affine: torch.Tensor, shape: Sequence[int], device: torch.device
             ) -> torch.Tensor:
        """``grid_sample`` grids (n, *patch, 3) of the patch centred in ``shape``, mapped by
        ``affine`` (batchgeneratorsv2's centred identity grid, ``grid @ affine.T``, then
        ``_convert_my_grid_to_grid_sample_grid``)."""
        axes = [torch.linspace((1 - p) / 2, (p - 1) / 2, p, device=device)
                for p in self.patch_size]
        base = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
        grid = torch.einsum("xyzj,nkj->nxyzk", base, affine.to(device, torch.float32))
        half = torch.tensor([s / 2 for s in shape], device=device, dtype=torch.float32)
        return (grid / half).flip(-1)

    def spatial(self, data: torch.Tensor, seg: torch.Tensor, draw: AugmentationDraw
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotation and scaling about the centre of the initial patch, or an integer centre
        crop for samples with neither."""
        shape = data.shape[2:]
        patch = self.patch_size
        starts = [math.floor(s / 2) - p // 2 for s, p in zip(shape, patch, strict=True)]
        if any(s < 0 or s + p > n for s, p, n in zip(starts, patch, shape, strict=True)):
            raise ValueError(f"initial patch {tuple(shape)} is smaller than the patch {patch}")
        crop = (slice(None), slice(None)) + tuple(slice(s, s + p) for s, p in zip(starts, patch,
                                                                               strict=True))
        out_data = data[crop].clone()
        out_seg = seg[crop].clone()
        moved = torch.nonzero(draw.rotate | draw.scale).flatten()
        if moved.numel() == 0:
            return out_data, out_seg
        idx = moved.to(data.device)
        grid = self.grid(self.affine(draw)[moved], shape, data.device)
        out_data[idx] = F.grid_sample(data[idx], grid, mode="bilinear", padding_mode="zeros",
                                      align_corners=False)
        out_seg[idx] = self._resample_seg(seg[idx], grid)
        return out_data, out_seg

    @staticmethod
    def _resample_seg(seg: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """batchgeneratorsv2's label-score resampling (``mode_seg='bilinear'``,
        ``border_mode_seg='constant'``, padding -1, ties to the nearest neighbour): each label's
        indicator sampled trilinearly, in float16 at scale 1000, the top score wins."""
        labels = torch.unique(torch.cat([seg.flatten(), seg.new_tensor([SEG_PADDING])]))
        scale = 1000.0
        onehot = (seg == labels.view(1, -1, 1, 1, 1)).float()  # (n, K, ...)
        pad = int((labels == SEG_PADDING).nonzero()[0, 0])
        onehot[:, pad] -= 1  # the padding label is 1 outside: sample (indicator - 1), add 1
        scores = F.grid_sample(onehot.mul_(scale), grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)
        scores[:, pad] += scale
        scores = scores.half()
        best, winner = scores.max(1)
        nearest = F.grid_sample(seg.float() - SEG_PADDING, grid, mode="nearest",
                                padding_mode="zeros", align_corners=False)[:, 0] + SEG_PADDING
        nearest = nearest.round().to(seg.dtype)
        own = scores.gather(1, torch.searchsorted(labels, nearest)[:, None])[:, 0]
        result = torch.where(own == best, nearest, labels[winner])
        return result[:, None].to(seg.dtype)

    # intensity ----------------------------------------------------------------------------------

    @staticmethod
    def noise(data: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
        """Gaussian noise with one std per sample for all channels."""
        idx = torch.nonzero(draw.noise).flatten()
        if idx.numel() == 0:
            return data
        gen = torch.Generator(device=data.device).manual_seed(draw.noise_seed)
        noise = torch.randn((idx.numel(), *data.shape[1:]), generator=gen, device=data.device,
                            dtype=data.dtype)
        std = draw.noise_std[idx].to(data.device, data.dtype).view(-1, 1, 1, 1, 1)
        data[idx.to(data.device)] += noise * std
        return data

    @staticmethod
    def blur_kernel(sigma: float) -> torch.Tensor:
        """batchgeneratorsv2's 1D Gaussian kernel (``_build_kernel`` with truncate 6)."""
        n = sigma * BLUR_TRUNCATE + 0.5
        rounded = round(n)
        size = rounded if rounded % 2 == 1 else (rounded + 1 if n - rounded >= 0 else rounded - 1)
        half = (size - 1) * 0.5
        x = torch.linspace(-half, half, steps=size)
        pdf = torch.exp(-0.5 * (x / float(sigma)).pow(2))
        return pdf / pdf.sum()

    def blur(self, data: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
        """Separable Gaussian blur of the chosen (sample, channel) pairs: one grouped
        convolution per axis, every pair with its own kernel (zero-padded to the longest)."""
        pairs = torch.nonzero(draw.blur[:, None] & draw.blur_channels)
        if pairs.numel() == 0:
            return data
        b, c = pairs[:, 0], pairs[:, 1]
        x = data[b.to(data.device), c.to(data.device)][None]  # (1, m, *patch)
        m = x.shape[1]
        for axis in range(3):
            kernels = [self.blur_kernel(float(s)) for s in draw.blur_sigma[b, c, axis]]
            size = max(k.numel() for k in kernels)
            weight = torch.zeros(m, size)
            for i, k in enumerate(kernels):
                off = (size - k.numel()) // 2
                weight[i, off:off + k.numel()] = k
            shape = [m, 1, 1, 1, 1]
            shape[2 + axis] = size
            weight = weight.view(shape).to(data.device, data.dtype)
            padding = [0] * 6
            padding[2 * (2 - axis)] = padding[2 * (2 - axis) + 1] = size // 2
            x = F.conv3d(F.pad(x, padding, mode="reflect"), weight, groups=m)
        data[b.to(data.device), c.to(data.device)] = x[0]
        return data

    @staticmethod
    def brightness(data: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
        """Multiplicative brightness, a factor per channel."""
        idx = torch.nonzero(draw.brightness).flatten()
        if idx.numel() == 0:
            return data
        factor = draw.brightness_factor[idx].to(data.device, data.dtype)
        dev = idx.to(data.device)
        data[dev] = data[dev] * factor[..., None, None, None]
        return data

    @staticmethod
    def contrast(data: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
        """Contrast about each channel's mean, clipped to its range before."""
        idx = torch.nonzero(draw.contrast).flatten()
        if idx.numel() == 0:
            return data
        dev = idx.to(data.device)
        x = data[dev]
        flat = x.flatten(2)
        mean = flat.mean(-1)[..., None, None, None]
        low = flat.amin(-1)[..., None, None, None]
        high = flat.amax(-1)[..., None, None, None]
        factor = draw.contrast_factor[idx].to(data.device, data.dtype)[..., None, None, None]
        data[dev] = torch.maximum(torch.minimum((x - mean) * factor + mean, high), low)
        return data

    def low_resolution(self, data: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
        """Nearest-exact downsampling to ``round(size * scale)`` then trilinear upsampling,
        per chosen (sample, channel), as two gathers and a blend per axis (both interpolations
        are separable)."""
        pairs = torch.nonzero(draw.lowres[:, None] & draw.lowres_channels)
        if pairs.numel() == 0:
            return data
        b, c = pairs[:, 0], pairs[:, 1]
        dev = data.device
        x = data[b.to(dev), c.to(dev)]  # (m, *patch)
        m = x.shape[0]
        scales = draw.lowres_scale[b, c].float().tolist()  # nnU-Net keeps them in float32
        for axis, size in enumerate(self.patch_size):
            if self.dummy_2d and axis == 0:
                continue  # nnU-Net's ignore_axes
            lo_idx, hi_idx, weight = [], [], []
            for s in scales:
                lo, hi, w = _lowres_axis(size, round(size * s))
                lo_idx.append(lo)
                hi_idx.append(hi)
                weight.append(w)
            view = [m, 1, 1, 1]
            view[1 + axis] = size
            lo_t = torch.stack(lo_idx).view(view).to(dev).expand_as(x)
            hi_t = torch.stack(hi_idx).view(view).to(dev).expand_as(x)
            w_t = torch.stack(weight).view(view).to(dev, x.dtype)
            x = torch.lerp(x.gather(1 + axis, lo_t), x.gather(1 + axis, hi_t), w_t)
        data[b.to(dev), c.to(dev)] = x
        return data

    @staticmethod
    def gamma_transform(data: torch.Tensor, apply: torch.Tensor, gamma: torch.Tensor,
                        invert: bool) -> torch.Tensor:
        """batchgeneratorsv2's ``GammaTransform`` with statistics retained (p 1), on every
        channel of the chosen samples; ``invert``: on the negated image."""
        idx = torch.nonzero(apply).flatten()
        if idx.numel() == 0:
            return data
        dev = idx.to(data.device)
        x = data[dev]
        if invert:
            x = -x
        flat = x.flatten(2)
        mean, std = flat.mean(-1), flat.std(-1)
        low, high = flat.amin(-1), flat.amax(-1)

        def v(t: torch.Tensor) -> torch.Tensor:
            return t[..., None, None, None]

        span = high - low
        g = gamma[idx].to(data.device, data.dtype)
        x = ((x - v(low)) / v(span.clamp(min=EPS))).pow(v(g)) * v(span) + v(low)
        flat = x.flatten(2)
        mean_here, std_here = flat.mean(-1), flat.std(-1)
        x = (x - v(mean_here)) * v(std / std_here.clamp(min=EPS)) + v(mean)
        data[dev] = -x if invert else x
        return data

    # mirroring and targets ----------------------------------------------------------------------

    @staticmethod
    def mirror(data: torch.Tensor, seg: torch.Tensor, draw: AugmentationDraw
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flip each sample along its drawn axes."""
        for i in range(data.shape[0]):
            axes = [2 + a for a in range(3) if bool(draw.mirror[i, a])]
            if axes:
                data[i] = torch.flip(data[i:i + 1], axes)[0]
                seg[i] = torch.flip(seg[i:i + 1], axes)[0]
        return data, seg

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


def _lowres_axis(size: int, small: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Along one axis of ``size`` voxels: ``interpolate(mode='nearest-exact')`` to ``small``,
    then ``interpolate(mode='linear', align_corners=False)`` back, as source indices into the
    original axis and a blend weight (PyTorch's index arithmetic, in float32)."""
    k = torch.arange(small, dtype=torch.float64)
    down_scale = torch.tensor(size / small, dtype=torch.float32).double()
    down = torch.clamp(torch.floor((k + 0.5) * down_scale).long(), max=size - 1)
    j = torch.arange(size, dtype=torch.float32)
    up_scale = torch.tensor(small / size, dtype=torch.float32)
    src = torch.clamp(up_scale * (j + 0.5) - 0.5, min=0)
    lo = src.long()
    hi = torch.clamp(lo + 1, max=small - 1)
    return down[lo], down[hi], src - lo

"""The intensity steps of the GPU augmentation (:mod:`.gpu_augment`) on a batch, each as
batchgeneratorsv2 computes it: Gaussian noise, Gaussian blur, multiplicative brightness,
contrast, simulated low resolution and gamma (``intensity`` runs them in nnU-Net's order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from kdbench_plugins.nnunet_backbone.augment_draw import AugmentationDraw

#: batchgeneratorsv2's blur kernel truncation (``blur_dimension``) and gamma epsilon.
BLUR_TRUNCATE = 6
EPS = 1e-7


def intensity(data: torch.Tensor, draw: AugmentationDraw, patch_size: Sequence[int],
              dummy_2d: bool) -> torch.Tensor:
    """Noise, blur, brightness, contrast, low resolution, gammas (in nnU-Net's order)."""
    data = noise(data, draw)
    data = blur(data, draw)
    data = brightness(data, draw)
    data = contrast(data, draw)
    data = low_resolution(data, draw, patch_size, dummy_2d)
    data = gamma_transform(data, draw.gamma_inverted, draw.gamma_inverted_value, True)
    return gamma_transform(data, draw.gamma, draw.gamma_value, False)


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


def blur_kernel(sigma: float) -> torch.Tensor:
    """batchgeneratorsv2's 1D Gaussian kernel (``_build_kernel`` with truncate 6)."""
    n = sigma * BLUR_TRUNCATE + 0.5
    rounded = round(n)
    size = rounded if rounded % 2 == 1 else (rounded + 1 if n - rounded >= 0 else rounded - 1)
    half = (size - 1) * 0.5
    x = torch.linspace(-half, half, steps=size)
    pdf = torch.exp(-0.5 * (x / float(sigma)).pow(2))
    return pdf / pdf.sum()


def blur(data: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
    """Separable Gaussian blur of the chosen (sample, channel) pairs: one grouped
    convolution per axis, every pair with its own kernel (zero-padded to the longest)."""
    pairs = torch.nonzero(draw.blur[:, None] & draw.blur_channels)
    if pairs.numel() == 0:
        return data
    b, c = pairs[:, 0], pairs[:, 1]
    x = data[b.to(data.device), c.to(data.device)][None]  # (1, m, *patch)
    m = x.shape[1]
    for axis in range(3):
        kernels = [blur_kernel(float(s)) for s in draw.blur_sigma[b, c, axis]]
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


def brightness(data: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
    """Multiplicative brightness, a factor per channel."""
    idx = torch.nonzero(draw.brightness).flatten()
    if idx.numel() == 0:
        return data
    factor = draw.brightness_factor[idx].to(data.device, data.dtype)
    dev = idx.to(data.device)
    data[dev] = data[dev] * factor[..., None, None, None]
    return data


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


def low_resolution(data: torch.Tensor, draw: AugmentationDraw, patch_size: Sequence[int],
                   dummy_2d: bool) -> torch.Tensor:
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
    for axis, size in enumerate(patch_size):
        if dummy_2d and axis == 0:
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

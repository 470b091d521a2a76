"""The random parameters of the GPU augmentation (:mod:`.gpu_augment`): nnU-Net's default
probabilities and ranges, and one batch's draw of them from a CPU ``torch.Generator``.

Every parameter is drawn on the CPU, in a fixed order, whether or not its transform applies,
so a batch's augmentations are a function of the generator's state and the parameters of one
transform never shift another's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

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


def sample_draw(batch_size: int, channels: int, generator: torch.Generator, *,
                rotation: tuple[float, float], mirror_axes: Sequence[int],
                dummy_2d: bool) -> AugmentationDraw:
    """Draw one batch's parameters from ``generator`` (a CPU generator): rotation angles
    uniform in ``rotation`` (only the in-plane one in dummy 2D), mirroring on ``mirror_axes``."""
    b, c, d = batch_size, channels, 3
    g = generator
    rotate = _chance(P_ROTATION, (b,), g)
    scale = _chance(P_SCALING, (b,), g)
    angles = _uniform(*rotation, (b, d), g)
    if dummy_2d:  # nnU-Net rotates the 2D slices (axes 1, 2) only
        angles[:, :2] = 0
    angles = torch.where(rotate[:, None], angles, torch.zeros_like(angles))
    factor = torch.where(scale, _uniform(*SCALING, (b,), g), torch.ones(b, dtype=torch.float64))
    mirror = _chance(P_MIRROR, (b, d), g)
    allowed = torch.zeros(d, dtype=torch.bool)
    allowed[list(mirror_axes)] = True
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

"""The generator's modules: the conditional U-Net (with its PatchGAN discriminator) and the
"complete, then segment" composite that feeds a segmenter generator-completed input."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def full_resolution(output: Any) -> torch.Tensor:
    """The full-resolution output of a network with or without deep supervision."""
    return output[0] if isinstance(output, list | tuple) else output


def patch_layers(patch_size: tuple[int, ...], wanted: int = 3) -> int:
    """PatchGAN's stride-2 layers that the patch allows (at least 4 voxels per side left)."""
    smallest = min(patch_size) if patch_size else 64
    layers = 0
    while layers < wanted and smallest // 2 ** (layers + 1) >= 4:
        layers += 1
    if layers == 0:
        raise ValueError(f"patch {list(patch_size)} is too small for a PatchGAN discriminator "
                         "(8 voxels per side at least); use a larger patch or "
                         "adversarial_weight 0")
    return layers


class GeneratorModel(nn.Module):
    """The conditional U-Net (``net``) and, with an adversarial term, its discriminator.

    The discriminator is part of the module (trained by the strategy's own optimizer and kept
    in the checkpoint) but never of the generator's forward pass. Its parameters stay frozen
    except inside the discriminator's own update.
    """

    def __init__(self, net: nn.Module, discriminator: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net
        self.discriminator = discriminator
        if discriminator is not None:
            discriminator.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x)


class SynthesiseThenSegment(nn.Module):
    """``segmenter(complete(x, generator(x)))``: the available channels ``x`` completed with
    the generator's point estimate of the missing ones, then segmented.

    The generator stays frozen and in eval mode (dropout off) whatever mode the composite is
    put in; only the segmenter may train.
    """

    def __init__(self, generator: Any, generator_model: nn.Module, segmenter: nn.Module) -> None:
        super().__init__()
        self.component = generator  # the Generator instance: which channels go where
        self.generator = generator_model
        self.segmenter = segmenter
        self.generator.requires_grad_(False)

    def train(self, mode: bool = True) -> SynthesiseThenSegment:
        super().train(mode)
        self.generator.eval()
        return self

    def forward(self, x: torch.Tensor) -> Any:
        with torch.no_grad():
            missing = self.component.synthesise(self.generator, x)
        return self.segmenter(self.component.complete(x, missing))
